"""Hosts of their own for one test: Linux network namespaces joined by veth pairs (root only).

Each namespace is a host with its own interfaces and its own loopback, so a process in one
reaches a process in another only by the address of a link between them, never by localhost.
Addresses are taken from 10.213.<n>.0/24, a block no interface of the machine uses, one /30 per
link; everything is removed by ``close()`` (deleting a namespace deletes its links). Names carry
the test process's pid, so a run killed before its cleanup leaves namespaces the next run
recognises as stale and removes (``sweep_stale``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field

CLONE_NEWNET = 0x40000000
ROOT = None  # the machine's own namespace, where the test process runs


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def available() -> bool:
    """Root, and ``ip netns`` works here."""
    if os.geteuid() != 0:
        return False
    probe = f"octollm-probe-{uuid.uuid4().hex[:6]}"
    try:
        _ip("netns", "add", probe)
    except (RuntimeError, FileNotFoundError):
        return False
    _ip("netns", "del", probe)
    return True


def _free_block() -> int:
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True,
                          check=False).stdout
    taken = {int(part.split(".")[2]) for part in used.split() if part.startswith("10.213.")}
    free = [n for n in range(1, 255) if n not in taken]
    return random.choice(free)


@dataclass
class Link:
    a: str | None
    a_addr: str
    b: str | None
    b_addr: str
    a_dev: str
    b_dev: str


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale() -> list[str]:
    """Delete the namespaces (and the machine-side links) of runs whose process is gone."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            check=False).stdout
    stale = []
    for line in listed.splitlines():
        name = line.split()[0] if line.split() else ""
        parts = name.split("-")
        if len(parts) == 3 and parts[0] == "octollm" and parts[2].isdigit() \
                and not _alive(int(parts[2])):
            with contextlib.suppress(RuntimeError):
                _ip("netns", "del", name)
            stale.append(name)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True,
                           check=False).stdout
    for line in links.splitlines():
        dev = line.split(":")[1].strip().split("@")[0] if line.count(":") >= 2 else ""
        if dev.startswith("o") and dev.endswith("a") and dev[1:-2].isdigit() \
                and not _alive(int(dev[1:-2])):
            with contextlib.suppress(RuntimeError):
                _ip("link", "del", dev)
    return stale


@dataclass
class Network:
    # One network per test process: the pid tells a live run's namespaces from a dead one's.
    tag: str = field(default_factory=lambda: str(os.getpid()))
    block: int = field(default_factory=_free_block)
    namespaces: list[str] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    _root_devs: list[str] = field(default_factory=list)

    def host(self, role: str) -> str:
        name = f"octollm-{role}-{self.tag}"
        _ip("netns", "add", name)
        self.namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")
        return name

    def link(self, a: str | None, b: str | None) -> Link:
        """A veth pair between ``a`` and ``b`` (None: the machine's namespace), a /30 each."""
        index = len(self.links)
        base = index * 4
        a_addr, b_addr = f"10.213.{self.block}.{base + 1}", f"10.213.{self.block}.{base + 2}"
        a_dev, b_dev = f"o{self.tag}{index}a", f"o{self.tag}{index}b"
        _ip("link", "add", a_dev, "type", "veth", "peer", "name", b_dev)
        if a is None:
            self._root_devs.append(a_dev)
        for ns, dev, addr in ((a, a_dev, a_addr), (b, b_dev, b_addr)):
            prefix = () if ns is None else ("-n", ns)
            if ns is not None:
                _ip("link", "set", dev, "netns", ns)
            _ip(*prefix, "addr", "add", f"{addr}/30", "dev", dev)
            _ip(*prefix, "link", "set", dev, "up")
        link = Link(a, a_addr, b, b_addr, a_dev, b_dev)
        self.links.append(link)
        return link

    def set_link(self, link: Link, up: bool) -> None:
        """Take the link down (both ends, as a pulled cable) or bring it back up."""
        state = "up" if up else "down"
        for ns, dev in ((link.a, link.a_dev), (link.b, link.b_dev)):
            prefix = () if ns is None else ("-n", ns)
            _ip(*prefix, "link", "set", dev, state)

    @staticmethod
    def argv(ns: str, argv: list[str]) -> list[str]:
        """``argv`` run inside ``ns`` (``ip netns exec`` execs it: same pid)."""
        return ["ip", "netns", "exec", ns, *argv]

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            with contextlib.suppress(RuntimeError):
                _ip("netns", "del", ns)
        for dev in self._root_devs:
            with contextlib.suppress(RuntimeError):
                _ip("link", "del", dev)
        self.namespaces.clear()
        self._root_devs.clear()


def port_open_in(ns: str, host: str, port: int, timeout: float = 1.0) -> bool:
    """Connect to ``host:port`` from inside ``ns``: a thread enters the namespace (setns is
    per thread) and the rest of the process stays where it is."""
    outcome: list[bool] = []

    def probe() -> None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        with open(f"/var/run/netns/{ns}") as handle:
            if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                outcome.append(False)
                return
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome.append(True)
        except OSError:
            outcome.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 5)
    return bool(outcome and outcome[0])


def wait_port_in(ns: str, host: str, port: int, timeout: float, what: str,
                 process: subprocess.Popen | None = None, log: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not port_open_in(ns, host, port):
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited: {log}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer on {host}:{port} within {timeout}s")
        time.sleep(0.25)
