"""Escape attempts against the executor's sandbox, written as an attacker would: python3 snippets
(``python3 -c`` is on the default allowlist) that try to reach what they must not.

Each probe is a command plus a check of the executor's output. Every probe proves it ran (a
positive control: it prints its marker and does something allowed, such as using its own work
directory or its own loopback) before its attempts count, so a probe that never started cannot
pass. The same probes run on the sandbox directly (tests/unit/arms/test_sandbox_escape.py) and
through the pipeline: API, executor worker, stored result (tests/integration/).

Probes print one JSON line and exit 0; they report error *names*, never addresses or contents, so
their output passes the guardian's redaction unchanged.
"""

from __future__ import annotations

import json
import shlex
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

# What a connection attempt from inside may end with: nothing listens on the sandbox's own
# loopback, and there is no route anywhere else.
BLOCKED = ("ConnectionRefusedError", "OSError:101", "TimeoutError", "OSError:99")


@dataclass
class Probe:
    name: str
    command: str
    check: Callable[[dict], None]  # given the executor's output; raises AssertionError


def command(code: str) -> str:
    return f"python3 -c {shlex.quote(code)}"


def report(output: dict) -> dict:
    """The probe's JSON line, after checking the command ran to the end (positive control)."""
    assert output["exit_code"] == 0, output
    lines = [line for line in output["stdout"].splitlines() if line.startswith("{")]
    assert lines, f"the probe printed no report: {output}"
    return json.loads(lines[-1])


def tcp_target(url: str) -> tuple[str, int] | None:
    parts = urlsplit(url)
    if parts.hostname and parts.port:
        return parts.hostname, parts.port
    return None


def host_reaches(host: str, port: int) -> bool:
    """The same target from the test's own process: proves the service is really there."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def outbound_address() -> str | None:
    """The host's own address on its default route (no packet is sent)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))
        return probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()


_CONNECT = """
import json, socket
marker, targets = {marker!r}, {targets!r}
results = {{}}
for name, (octets, port) in targets.items():
    host = ".".join(map(str, octets))
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect((host, port))
        s.sendall(b"PING\\r\\n")
        results[name] = "connected:" + repr(s.recv(16)[:4])
    except OSError as e:
        results[name] = type(e).__name__ if type(e) is not OSError else "OSError:%d" % e.errno
    finally:
        s.close()
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(1)
client = socket.create_connection(server.getsockname(), timeout=2)
peer, _ = server.accept()
client.sendall(b"own loopback")
print(json.dumps({{"marker": marker, "control": peer.recv(64).decode(), "results": results,
                  "interfaces": sorted(n for _, n in socket.if_nameindex())}}))
"""


def connect_probe(targets: dict[str, tuple[str, int]]) -> Probe:
    """Connects to each (IPv4 address, port). The addresses travel as octets, joined inside, as
    an attacker would write them: the pipeline redacts dotted addresses in what it stores."""
    marker = f"net-{uuid.uuid4().hex[:8]}"
    numeric = {name: ([int(part) for part in socket.gethostbyname(host).split(".")], port)
               for name, (host, port) in targets.items()}

    def check(output: dict) -> None:
        seen = report(output)
        assert seen["marker"] == marker and seen["control"] == "own loopback", seen
        assert seen["interfaces"] == ["lo"], seen  # no device that leads anywhere
        assert set(seen["results"]) == set(targets)
        for name, result in seen["results"].items():
            assert result in BLOCKED, f"{name}: {result}"
            if numeric[name][0][0] != 127:  # no route at all off the sandbox's loopback
                assert result == "OSError:101", f"{name}: {result}"

    return Probe("connect", command(_CONNECT.format(marker=marker, targets=numeric)), check)


_READ = """
import json, os
marker, paths = {marker!r}, {paths!r}
open("own-file", "w").write(marker)
results = {{}}
for name, path in paths.items():
    try:
        if os.path.isdir(path):
            results[name] = "listed:%d" % len(os.listdir(path))
        else:
            with open(path, "rb") as fh:
                data = fh.read()
            names = {{v.split(b"=", 1)[0].decode(errors="replace") for v in data.split(b"\\0")}}
            results[name] = "read:" + ",".join(sorted(names - {{""}}))[:400]
    except OSError as e:
        results[name] = type(e).__name__
print(json.dumps({{"marker": marker, "control": open("own-file").read(),
                  "usr": len(os.listdir("/usr/bin")) > 10, "results": results}}))
"""


def read_probe(paths: dict[str, str], *, allowed: Callable[[str, str], bool] | None = None
               ) -> Probe:
    """Each path must be absent or unreadable; ``allowed(name, result)`` may accept a result
    (a pid that exists inside the namespace names one of the sandbox's own processes)."""
    marker = f"read-{uuid.uuid4().hex[:8]}"

    def check(output: dict) -> None:
        seen = report(output)
        assert seen["marker"] == marker and seen["control"] == marker and seen["usr"], seen
        assert set(seen["results"]) == set(paths)
        for name, result in seen["results"].items():
            if allowed is not None and allowed(name, result):
                continue
            assert result in ("FileNotFoundError", "PermissionError", "NotADirectoryError"), (
                f"{name}: {result}")

    return Probe("read", command(_READ.format(marker=marker, paths=paths)), check)


_WRITE = """
import json, os
marker, paths = {marker!r}, {paths!r}
results = {{}}
for name, path in paths.items():
    try:
        with open(path, "w") as fh:
            fh.write(marker)
        results[name] = "written"
    except OSError as e:
        results[name] = type(e).__name__
with open("/work/own-file", "w") as fh:
    fh.write(marker)
print(json.dumps({{"marker": marker, "control": open("own-file").read(), "results": results}}))
"""


def write_probe(paths: dict[str, str]) -> Probe:
    marker = f"write-{uuid.uuid4().hex[:8]}"

    def check(output: dict) -> None:
        seen = report(output)
        assert seen["marker"] == marker and seen["control"] == marker, seen
        for name, result in seen["results"].items():
            assert result in ("OSError", "FileNotFoundError", "PermissionError"), (
                f"{name}: {result}")

    return Probe("write", command(_WRITE.format(marker=marker, paths=paths)), check)


_LEAVE = """
import json, os, time
marker = {marker!r}
with open(marker, "w") as fh:
    fh.write("left by another task")
print(json.dumps({{"marker": marker, "control": os.listdir(".")}}), flush=True)
time.sleep({linger})
"""


def leave_file_probe(linger: float) -> tuple[Probe, str]:
    """Writes a uniquely named file into its work directory and stays ``linger`` seconds."""
    name = f"secret-{uuid.uuid4().hex[:8]}"

    def check(output: dict) -> None:
        seen = report(output)
        assert seen["marker"] == name and seen["control"] == [name], seen

    return Probe("leave", command(_LEAVE.format(marker=name, linger=linger)), check), name


_FIND = """
import json, os
marker, needle = {marker!r}, {needle!r}
open("own-file", "w").write(marker)
found = []
for top in ("/", "/work", "/tmp"):
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if os.path.join(root, d) not in ("/proc", "/sys", "/usr")]
        found += [os.path.join(root, f) for f in files if needle in f]
print(json.dumps({{"marker": marker, "control": sorted(os.listdir(".")), "found": found}}))
"""


def find_file_probe(needle: str) -> Probe:
    marker = f"find-{uuid.uuid4().hex[:8]}"

    def check(output: dict) -> None:
        seen = report(output)
        assert seen["marker"] == marker and seen["control"] == ["own-file"], seen
        assert seen["found"] == [], seen

    return Probe("find", command(_FIND.format(marker=marker, needle=needle)), check)


_PROCESSES = """
import json, os, signal
marker, pids = {marker!r}, {pids!r}
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
signalled = {{}}
for pid in pids:
    try:
        os.kill(pid, 0)
        signalled[str(pid)] = "alive"
    except OSError as e:
        signalled[str(pid)] = type(e).__name__
print(json.dumps({{"marker": marker, "uid": os.getuid(), "gid": os.getgid(),
                  "no_new_privs": status["NoNewPrivs"].strip(),
                  "cap_eff": status["CapEff"].strip(), "cap_bnd": status["CapBnd"].strip(),
                  "visible": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
                  "signalled": signalled}}))
"""


def process_probe(pids: list[int]) -> Probe:
    """Sees only its own processes, cannot signal the given (host) pids, holds no privilege."""
    marker = f"proc-{uuid.uuid4().hex[:8]}"

    def check(output: dict) -> None:
        seen = report(output)
        assert seen["marker"] == marker, seen
        assert seen["uid"] != 0 and seen["gid"] != 0, seen
        assert seen["no_new_privs"] == "1", seen
        assert int(seen["cap_eff"], 16) == 0, seen
        # bwrap's init, then the command (prlimit exec'd into python): nothing of the host.
        assert seen["visible"] == [1, 2], seen
        for pid in pids:
            if pid not in (1, 2):
                assert seen["signalled"][str(pid)] == "ProcessLookupError", seen

    return Probe("processes", command(_PROCESSES.format(marker=marker, pids=pids)), check)


_FORK_BOMB = """
import json, os, time
marker = {marker!r}
print(json.dumps({{"marker": marker}}), flush=True)
children = 0
while True:
    try:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        children += 1
    except OSError:
        if children:
            print(json.dumps({{"marker": marker, "children": children}}), flush=True)
            children = 0
        time.sleep(0.05)
"""


def fork_bomb_probe(max_processes: int) -> Probe:
    marker = f"bomb-{uuid.uuid4().hex[:8]}"

    def check(output: dict) -> None:
        lines = [json.loads(line) for line in output["stdout"].splitlines()
                 if line.startswith("{")]
        assert lines and lines[0]["marker"] == marker, output
        counts = [line["children"] for line in lines if "children" in line]
        assert counts and max(counts) < max_processes, counts  # the process limit held
        assert output["timed_out"] is True and output["signal"] == "SIGKILL", output

    return Probe("fork bomb", command(_FORK_BOMB.format(marker=marker)), check)


_FLOOD = """
import sys
sys.stdout.write({marker!r} + "\\n")
block = "x" * 1_000_000
for _ in range(100):
    sys.stdout.write(block)
"""


def output_flood_probe(cap: int) -> Probe:
    marker = f"flood-{uuid.uuid4().hex[:8]}"

    def check(output: dict) -> None:
        assert output["stdout"].startswith(marker), output["stdout"][:100]
        assert output["exit_code"] == 0 and output["timed_out"] is False
        assert output["truncated"] is True and len(output["stdout"].encode()) <= cap
        assert output["stdout_bytes"] == len(marker) + 1 + 100_000_000

    return Probe("100 MB of output", command(_FLOOD.format(marker=marker)), check)


_SLEEP = """
import time
print({marker!r}, flush=True)
time.sleep(600)
print("woke up")
"""


def sleep_probe(timeout: float) -> Probe:
    marker = f"sleep-{uuid.uuid4().hex[:8]}"

    def check(output: dict) -> None:
        assert output["stdout"] == marker + "\n", output
        assert output["timed_out"] is True and output["signal"] == "SIGKILL", output
        assert timeout * 1000 <= output["duration_ms"] < (timeout + 3) * 1000, output

    return Probe("sleep past the limit", command(_SLEEP.format(marker=marker)), check)
