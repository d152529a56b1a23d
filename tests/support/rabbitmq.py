"""A private RabbitMQ server for the fault suite, which kills it: its own node name, port,
data directory and no plugins, so the machine's RabbitMQ (and every other run) is untouched.

Started from the machine's RabbitMQ installation (Debian's rabbitmq-server package), as the
current user, in a process group of its own so ``kill()`` ends the whole Erlang VM at once, as a
host losing power would. Its data directory survives ``kill()``: a restarted server finds the
durable queues and persistent messages it had, which is what RabbitMQ promises and Redis
without persistence does not.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from workers.embedded import free_port, port_open

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


def available() -> bool:
    return SERVER.exists()


@dataclass
class PrivateRabbitMQ:
    root: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def _env(self) -> dict[str, str]:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "enabled_plugins").write_text("[].\n")
        (self.root / "rabbitmq-env.conf").write_text("")
        # guest may connect over 127.0.0.1 as on any default install; nothing listens elsewhere.
        (self.root / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n")
        return {**os.environ, "HOME": str(self.root),
                "RABBITMQ_NODENAME": f"octollm-test-{self.port}@localhost",
                "RABBITMQ_NODE_PORT": str(self.port),
                "RABBITMQ_DIST_PORT": str(free_port()),
                "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
                "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq.conf"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
                "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
                "RABBITMQ_LOG_BASE": str(self.root / "log"),
                "RABBITMQ_PID_FILE": str(self.root / "pid")}

    def start(self, timeout: float = 120.0) -> PrivateRabbitMQ:
        env = self._env()
        with open(self.root / "server.log", "ab") as log:
            self.process = subprocess.Popen([str(SERVER)], env=env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not port_open("127.0.0.1", self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"rabbitmq-server not up after {timeout}s")
            time.sleep(0.25)
        return self

    def kill(self) -> None:
        """SIGKILL to the server's whole process group: no clean shutdown of any kind."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None

    def restart(self, down_seconds: float) -> None:
        self.kill()
        time.sleep(down_seconds)
        self.start()

    def log(self) -> str:
        try:
            return (self.root / "server.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)

