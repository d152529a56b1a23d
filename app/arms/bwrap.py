"""The namespace boundary around every executor command, set up by bubblewrap (``bwrap``).

bubblewrap is the sandbox Flatpak uses: a small, audited setuid-free C program that creates the
namespaces, builds a new root from explicit mounts and execs the command. We only choose its
arguments, so the boundary is no hand-written ``unshare`` code of ours. Each command gets:

* a user namespace where it is uid/gid 1000 ("sandbox") with no capabilities, no new privileges
  (bwrap sets PR_SET_NO_NEW_PRIVS) and no further user namespaces (``--disable-userns``); outside
  it is the unprivileged user the worker dropped to (app/arms/sandbox.py);
* its own network namespace (loopback only: no broker, database, API or outside address), IPC,
  UTS (hostname "sandbox") and cgroup namespaces;
* its own PID namespace, with its own /proc: it sees and signals only its own processes, and all
  of them die with it (``--die-with-parent``: when the worker or bwrap goes, so does everything);
* its own mount namespace whose root is a read-only tmpfs holding only /usr (and the /bin, /lib...
  links into it), a few files of /etc the programs need and synthetic passwd/group/hosts, a
  minimal /dev, and one writable tmpfs of bounded size, ``/work``, as cwd, HOME and TMPDIR (/tmp
  points there). Nothing of the project, var/, the worker's home, the host's /tmp or another task
  is mounted, and the tmpfs disappears with the namespace.

Where the host or the container refuses namespaces, bwrap exits before the command runs and says
why; ``run_sandboxed`` turns that into SandboxUnavailable with bwrap's own message.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass

WORKDIR = "/work"
SANDBOX_UID = SANDBOX_GID = 1000
HOSTNAME = "sandbox"
# What the allowlisted programs need from the host's /etc: the dynamic linker's cache and config,
# the time zone, and the alternatives symlinks some Debian programs resolve through. No users,
# no hosts, no resolver, no certificates (there is no network), nothing an operator keeps there.
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "alternatives")
# Top-level links of a merged-/usr system (or the real directories of an older layout).
USR_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# bwrap's message when the kernel refuses a fresh procfs: the surrounding container masks parts of
# its own /proc (Docker's and Kubernetes' defaults), and a new mount would reveal them.
PROC_REFUSED = "Can't mount proc"


class SandboxUnavailable(Exception):
    """bwrap is missing, or this host/container does not let it create the namespaces."""


@dataclass(frozen=True)
class Layout:
    """The parts of the host the sandbox's root is built from, found once per process."""

    usr_links: tuple[tuple[str, str], ...]  # (/bin, usr/bin) for a symlink
    usr_dirs: tuple[str, ...]  # top-level dirs bound as they are (a layout without merged /usr)
    etc: tuple[str, ...]
    proc: bool = True  # False where the container forbids a new procfs: the sandbox has no /proc

    @classmethod
    def of_host(cls) -> Layout:
        links, dirs = [], []
        for name in USR_LINKS:
            path = "/" + name
            if os.path.islink(path):
                links.append((path, os.readlink(path)))
            elif os.path.isdir(path):
                dirs.append(path)
        etc = tuple(f"/etc/{name}" for name in ETC_FILES if os.path.lexists(f"/etc/{name}"))
        return cls(usr_links=tuple(links), usr_dirs=tuple(dirs), etc=etc)

    def roots(self) -> tuple[str, ...]:
        """The host directories visible (read-only) inside."""
        return ("/usr", *self.usr_dirs)

    def shows(self, program: str) -> bool:
        """Whether the sandbox sees ``program`` where the host does: its path starts in a mounted
        directory or one of the links into /usr, and wherever symlinks lead, they stay inside."""
        def under(path: str, tops: Iterable[str]) -> bool:
            return any(path.startswith(top.rstrip("/") + "/") for top in tops)
        visible = (*self.roots(), *(link for link, _ in self.usr_links))
        return under(os.path.abspath(program), visible) and under(os.path.realpath(program),
                                                                  self.roots())


@dataclass(frozen=True)
class Tools:
    """The programs a sandboxed run is made of: all small C tools, no interpreter."""

    bwrap: str
    prlimit: str  # util-linux; sets the rlimits inside the namespaces (see argv)
    setpriv: str | None  # util-linux; drops a root worker to the sandbox user before bwrap

    @classmethod
    def find(cls, *, drop_root: bool) -> Tools:
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise SandboxUnavailable(
                "bwrap is not installed (Debian package bubblewrap; `make venv` and the image "
                "install it), so commands cannot be isolated; OCTOLLM_EXECUTOR_SANDBOX=none runs "
                "them without namespaces, for development only")
        prlimit = shutil.which("prlimit", path="/usr/bin:/bin")
        setpriv = shutil.which("setpriv", path="/usr/bin:/bin") if drop_root else None
        if prlimit is None or (drop_root and setpriv is None):
            raise SandboxUnavailable("prlimit and setpriv (Debian package util-linux) are needed "
                                     "next to bwrap")
        return cls(bwrap=bwrap, prlimit=prlimit, setpriv=setpriv)


def argv(tools: Tools, layout: Layout, *, user: tuple[int, int] | None,
         rlimits: dict[str, tuple[int, int]], scratch_bytes: int, status_fd: int,
         data_fds: dict[str, int]) -> list[str]:
    """Everything before the command's own argv.

    ``user`` (uid, gid) is whom a root worker becomes before bwrap starts; ``rlimits`` maps
    prlimit's option names to (soft, hard); ``data_fds`` maps /etc paths to pipes bwrap reads.

    The rlimits are set by prlimit *inside* the namespaces, not before bwrap: the kernel counts
    RLIMIT_NPROC per user namespace, and a user namespace inherits its creator's limit as a
    ceiling for the creator's uid on the whole host. Set before bwrap, one sandbox's fork bomb
    would use up the process budget of every other sandbox running as the same user.
    """
    args: list[str] = []
    if user is not None:
        assert tools.setpriv is not None, "Tools.find(drop_root=True) finds setpriv"
        uid, gid = user
        args += [tools.setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
    args += [
        tools.bwrap,
        "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_GID),
        "--disable-userns",
        "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
        "--unshare-cgroup-try", "--hostname", HOSTNAME,
        "--die-with-parent", "--new-session",
        "--json-status-fd", str(status_fd),
        "--ro-bind", "/usr", "/usr",
    ]
    for link, target in layout.usr_links:
        args += ["--symlink", target, link]
    for directory in layout.usr_dirs:
        args += ["--ro-bind", directory, directory]
    for path in layout.etc:
        args += ["--ro-bind", path, path]
    for path, fd in data_fds.items():
        args += ["--perms", "0444", "--file", str(fd), path]
    args += ["--dev", "/dev", "--remount-ro", "/dev"]
    if layout.proc:
        args += ["--proc", "/proc"]
    args += [
        "--size", str(scratch_bytes), "--tmpfs", WORKDIR, "--symlink", WORKDIR, "/tmp",
        "--chdir", WORKDIR,
        # Last: everything above was created in the root tmpfs, which now becomes read-only.
        "--remount-ro", "/",
        "--", tools.prlimit,
    ]
    args += [f"--{name}={soft}:{hard}" for name, (soft, hard) in rlimits.items()]
    return args + ["--"]


def etc_files() -> dict[str, bytes]:
    """Synthetic /etc entries: the command's own user, and localhost for loopback servers."""
    return {
        "/etc/passwd": (f"root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
                        f"sandbox:x:{SANDBOX_UID}:{SANDBOX_GID}:sandbox:{WORKDIR}:/usr/sbin/nologin\n"
                        f"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n").encode(),
        "/etc/group": (f"root:x:0:\nsandbox:x:{SANDBOX_GID}:\nnogroup:x:65534:\n").encode(),
        "/etc/hosts": f"127.0.0.1 localhost {HOSTNAME}\n::1 localhost\n".encode(),
    }


def status(stream: bytes) -> tuple[int | None, int | None]:
    """(pid of the sandbox's init, the command's exit status) from bwrap's --json-status-fd.

    bwrap writes ``child-pid`` once the namespaces exist and ``exit-code`` only for a command
    that started, so a missing exit code means the setup failed and nothing ran."""
    child = code = None
    for line in stream.decode("utf-8", "replace").splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if not isinstance(document, dict):
            continue
        if isinstance(document.get("child-pid"), int):
            child = document["child-pid"]
        if isinstance(document.get("exit-code"), int):
            code = document["exit-code"]
    return child, code


def setup_error(stderr: bytes) -> str:
    """bwrap's own complaint (its lines start with ``bwrap:``), for the refusal message."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()]
    mine = [line for line in lines if line.startswith("bwrap:")]
    return "; ".join(mine or lines[-3:]) or "bwrap exited before starting the command"
