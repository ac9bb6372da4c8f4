"""Kernel-enforced confinement of session processes.

The fork server builds, once, a minimal read-only root file system holding only the
system libraries and the Python installation. Every session process then enters its own
network, IPC, UTS, mount and PID namespaces, gets a private size-limited ``/tmp``,
``chroot``s into that root, sets resource limits, forbids privilege gain and drops to a
uid of its own, so that its processes can neither see nor signal anything else on the host.

Each layer is probed at start-up. A layer the host cannot provide (no root and no user
namespaces, say) is reported by name in :class:`IsolationReport`; nothing is skipped silently.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import resource
import secrets
import signal
import socket
import stat
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from codevision.sandbox import linux, seccomp
from codevision.sandbox.cgroups import CgroupLimiter
from codevision.sandbox.config import SandboxConfig

#: The codevision package as the host sees it; sessions see only its sandbox part.
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What a session needs from /etc: the dynamic loader cache, fonts and time zone.
ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/fonts",
    "/etc/localtime",
    "/etc/alternatives",
    "/etc/mime.types",
)
TOP_LEVEL = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
DEVICES = ("null", "zero", "full", "random", "urandom")

LAYER_DESCRIPTIONS = {
    "user_namespace": "user namespace (needed when not running as root)",
    "mount_namespace": "private read-only root file system and private /tmp",
    "network_namespace": "no network (own network namespace)",
    "pid_namespace": "own PID namespace (cannot see or signal host processes; killed as a whole)",
    "ipc_namespace": "own System V IPC namespace",
    "uts_namespace": "own hostname namespace",
    "dedicated_uid": "a uid of its own per session (unprivileged; per-session process limit)",
    "no_new_privs": "no privilege gain through setuid binaries or file capabilities",
    "seccomp": (
        "no keyring, ptrace, BPF, perf, io_uring, mount or kernel-changing system calls; no sockets but Unix ones, "
        "no file change notifications, no file locks"
    ),
    "capabilities": "all capabilities dropped",
    "rlimits": "address space, CPU time, file size, processes and open files limits",
    "cgroups": "memory (tmpfs and memfd included) and process-count limits per session",
    "scrubbed_environment": "empty environment and no inherited file descriptors",
}

UID_BASE = 1 << 30


@dataclass
class IsolationReport:
    """Which confinement layers this host provides, with the reason for each missing one."""

    available: dict[str, bool] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    running_as_root: bool = False

    def mark(self, layer: str, ok: bool, reason: str = "") -> None:
        self.available[layer] = ok
        if not ok:
            self.reasons[layer] = reason

    @property
    def missing(self) -> list[str]:
        return [name for name, ok in self.available.items() if not ok]

    def describe_missing(self) -> list[str]:
        return [
            f"{name} ({LAYER_DESCRIPTIONS.get(name, name)}): {self.reasons.get(name, 'unavailable')}"
            for name in self.missing
        ]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _probe_in_child(action: Callable[[], object]) -> str:
    """Try ``action`` in a throw-away child; return '' on success or the error."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        try:
            action()
            os.write(write_fd, b"ok")
        except OSError as exc:
            os.write(write_fd, str(exc).encode()[:500])
        os._exit(0)
    os.close(write_fd)
    answer = os.read(read_fd, 512).decode(errors="replace")
    os.close(read_fd)
    os.waitpid(pid, 0)
    return "" if answer == "ok" else answer or "probe failed"


class Confiner:
    """Prepared once in the fork server; applies the confinement in each session process."""

    def __init__(self, config: SandboxConfig, rootfs: str, python_paths: list[str]) -> None:
        self.config = config
        self.rootfs = rootfs
        self.python_paths = python_paths
        self.report = IsolationReport(running_as_root=os.geteuid() == 0)
        self.userns = False
        self.pidns_fd: int | None = None
        self.child_flags = 0
        self.paths_under_tmp: list[str] = []
        self.package_under_tmp = False
        self.cgroups: CgroupLimiter | None = None
        self.seccomp_program: bytes | None = None
        self.server_pid = os.getpid()
        self.session_userns = False
        self.host_ids = (os.getuid(), os.getgid())

    # ------------------------------------------------------------------ fork server side
    def prepare(self) -> IsolationReport:
        """Set up what the fork server itself needs and probe every layer a session will use."""
        report = self.report
        report.mark("scrubbed_environment", True)
        report.mark("rlimits", True)
        report.mark("no_new_privs", True)
        if not report.running_as_root:
            self._enter_user_namespace()
        privileged = report.running_as_root or self.userns
        self._prepare_root_filesystem(privileged)
        self._probe_namespaces(privileged)
        self._probe_pid_namespace(privileged)
        self._prepare_identity(privileged)
        self._prepare_cgroups(privileged)
        self._prepare_seccomp()
        self._apply_disabled_layers()
        return report

    def _enter_user_namespace(self) -> None:
        """Without root, a user namespace gives the fork server the powers the other layers need."""
        try:
            linux.unshare(linux.CLONE_NEWUSER)
            linux.write_id_maps(*self.host_ids, 0, 0)
        except OSError as exc:
            self.report.mark("user_namespace", False, f"unshare(CLONE_NEWUSER) failed: {exc}")
            return
        self.userns = True
        self.report.mark("user_namespace", True)
        _continue_in_own_pid_namespace()
        # The pid the host sees: inside its own PID namespace, os.getpid() may answer 1.
        self.server_pid = int(os.readlink("/proc/self"))

    def _prepare_root_filesystem(self, privileged: bool) -> None:
        if not privileged:
            self.report.mark("mount_namespace", False, "requires root or a user namespace")
            return
        try:
            linux.unshare(linux.CLONE_NEWNS)
            linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
            self._build_rootfs()
        except OSError as exc:
            self.report.mark("mount_namespace", False, str(exc))
            return
        self.report.mark("mount_namespace", True)
        self.child_flags |= linux.CLONE_NEWNS

    def _probe_namespaces(self, privileged: bool) -> None:
        for layer, flag in (
            ("network_namespace", linux.CLONE_NEWNET),
            ("ipc_namespace", linux.CLONE_NEWIPC),
            ("uts_namespace", linux.CLONE_NEWUTS),
        ):
            failure = (
                _probe_in_child(functools.partial(linux.unshare, flag))
                if privileged
                else "requires root or a user namespace"
            )
            self.report.mark(layer, not failure, failure)
            if not failure:
                self.child_flags |= flag

    def _prepare_identity(self, privileged: bool) -> None:
        """Decide how a session sheds privileges: its own uid (root), or dropped capabilities."""
        report = self.report
        if report.running_as_root:
            failure = _probe_in_child(functools.partial(_become, self.new_session_uid()))
        else:
            failure = "not running as root: sessions share the host uid"
            problem = _probe_in_child(_probe_process_limit) if self.userns else "requires a user namespace"
            self.session_userns = not problem
            failure += (
                " (each session's own user namespace still bounds its processes)"
                if self.session_userns
                else f" and have no per-session process limit: {problem}"
            )
        report.mark("dedicated_uid", not failure, failure)
        if report.running_as_root and not failure:
            failure = ""  # switching to the session's uid clears every capability
        elif privileged:
            failure = _probe_in_child(_drop_capabilities)
        else:
            failure = _probe_in_child(linux.drop_all_capabilities)
        report.mark("capabilities", not failure, failure)

    def _prepare_cgroups(self, privileged: bool) -> None:
        if not privileged:
            self.report.mark("cgroups", False, "requires root or a delegated cgroup")
            return
        try:
            self.cgroups = CgroupLimiter.create(f"codevision-{self.server_pid}")
        except OSError as exc:
            self.report.mark("cgroups", False, str(exc))
            return
        self.report.mark("cgroups", True)
        # A cgroup namespace rooted at the session's own group: /proc/self/cgroup no longer shows host paths.
        if not _probe_in_child(functools.partial(linux.unshare, linux.CLONE_NEWCGROUP)):
            self.child_flags |= linux.CLONE_NEWCGROUP

    def _apply_disabled_layers(self) -> None:
        flags = {
            "network_namespace": linux.CLONE_NEWNET,
            "ipc_namespace": linux.CLONE_NEWIPC,
            "uts_namespace": linux.CLONE_NEWUTS,
            "pid_namespace": 0,
        }
        for layer in self.config.disable_layers:
            self.report.mark(layer, False, "disabled by configuration (disable_layers)")
            self.child_flags &= ~flags[layer]
            if layer == "pid_namespace" and self.pidns_fd is not None:
                os.close(self.pidns_fd)
                self.pidns_fd = None

    def _prepare_seccomp(self) -> None:
        def probe() -> None:
            linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
            seccomp.install(program)

        try:
            program = seccomp.build_filter()
        except OSError as exc:
            self.report.mark("seccomp", False, str(exc))
            return
        failure = _probe_in_child(probe)
        self.report.mark("seccomp", not failure, failure)
        if not failure:
            self.seccomp_program = program

    def _probe_pid_namespace(self, privileged: bool) -> None:
        if not privileged:
            self.report.mark("pid_namespace", False, "requires root or a user namespace")
            return
        try:
            fd = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
            linux.unshare(linux.CLONE_NEWPID)
            linux.setns(fd, linux.CLONE_NEWPID)
            self.pidns_fd = fd
            self.report.mark("pid_namespace", True)
        except OSError as exc:
            self.report.mark("pid_namespace", False, str(exc))

    def _bind(self, source: str, readonly: bool = True) -> None:
        target = self.rootfs + source
        if os.path.isdir(source):
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "a"):
                pass
        linux.mount(source, target, None, linux.MS_BIND | linux.MS_REC)
        if readonly:
            flags = linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV
            try:
                linux.mount(None, target, None, flags)
            except OSError as exc:
                if exc.errno != errno.EPERM:
                    raise
                linux.mount(None, target, None, flags | linux.MS_NOEXEC)

    def _build_rootfs(self) -> None:
        root = self.rootfs
        linux.mount("tmpfs", root, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "mode=0755,size=4m")
        for path in TOP_LEVEL:
            if os.path.islink(path):
                os.symlink(os.readlink(path), root + path)
            elif os.path.isdir(path):
                self._bind(path)
        for path in ETC_FILES:
            if os.path.exists(path):
                self._bind(path)
        bound = ["/usr", *(p for p in TOP_LEVEL if os.path.isdir(p) and not os.path.islink(p))]
        for path in sorted(set(self.python_paths), key=len):
            if not os.path.isdir(path) or path == "/" or any(_under(path, b) for b in bound):
                continue
            if _under(path, "/tmp"):
                self.paths_under_tmp.append(path)
            else:
                self._bind(path)
            bound.append(path)
        self.package_under_tmp = _under(PACKAGE_DIR, "/tmp")
        if not self.package_under_tmp:
            self._hide_package_sources()
        dev = root + "/dev"
        os.makedirs(dev)
        linux.mount("tmpfs", dev, "tmpfs", linux.MS_NOSUID | linux.MS_NOEXEC, "mode=0755,size=64k")
        for name in DEVICES:
            if os.path.exists(f"/dev/{name}"):
                self._bind(f"/dev/{name}", readonly=False)
        for name, target in (
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ):
            os.symlink(target, f"{dev}/{name}")
        os.makedirs(root + "/proc")
        os.makedirs(root + "/tmp")
        os.chmod(root + "/tmp", 0o1777)
        linux.mount(None, dev, None, linux.MS_REMOUNT | linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NOEXEC)
        linux.mount(None, root, None, linux.MS_REMOUNT | linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV)

    def _hide_package_sources(self) -> None:
        """Cover the codevision package with an empty directory holding only what a session runs.

        A session needs the sandbox package (already imported, but a cell may import more of it) and
        nothing else of codevision: how rewards and scorers work is none of its business.
        """
        target = self.rootfs + PACKAGE_DIR
        if not os.path.isdir(target):
            return
        linux.mount("tmpfs", target, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "mode=0755,size=64k")
        self._bind(os.path.join(PACKAGE_DIR, "__init__.py"))
        self._bind(os.path.join(PACKAGE_DIR, "sandbox"))
        linux.mount(None, target, None, linux.MS_REMOUNT | linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV)

    @staticmethod
    def new_session_uid() -> int:
        """A fresh uid from a 2**30-wide range: never shared by two live sessions of any sandbox on
        the host in practice, and not reused soon, so nothing a uid owns (keys, files) carries over."""
        return UID_BASE + 1 + secrets.randbelow(UID_BASE - 2)

    # ------------------------------------------------------------------ session side
    def fork_session(self, slot: int, uid: int, child_sock: socket.socket) -> int:
        """Fork a session process (PID 1 of a new PID namespace when available); return its pid."""
        cgroup_dirs: list[str] = []
        if self.cgroups is not None:
            memory = self.config.memory_mb * 1024 * 1024 + _resident_bytes()
            cgroup_dirs = self.cgroups.prepare_session(slot, memory, self.config.max_processes)
        if self.pidns_fd is not None:
            linux.unshare(linux.CLONE_NEWPID)
        try:
            pid = os.fork()
            if pid == 0:
                self._enter(uid, child_sock, cgroup_dirs)
        finally:
            if self.pidns_fd is not None:
                linux.setns(self.pidns_fd, linux.CLONE_NEWPID)
        return pid

    def _enter(self, uid: int, sock: socket.socket, cgroup_dirs: list[str]) -> None:
        """Runs in the new session process; never returns."""
        code = 0
        try:
            CgroupLimiter.join(cgroup_dirs)
            self._confine(uid, sock.fileno())
            from codevision.sandbox.runtime import session_main

            session_main(sock, self.config)
        except BaseException as exc:
            code = 70
            with contextlib.suppress(Exception):
                from codevision.sandbox import wire

                wire.send_frame(sock, {"type": "fatal", "message": f"session setup failed: {exc!r}"})
        finally:
            os._exit(code)

    def _confine(self, uid: int, keep_fd: int) -> None:
        os.setsid()
        signal.set_wakeup_fd(-1)
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        null = os.open("/dev/null", os.O_RDWR)
        os.dup2(null, 0)
        os.close(null)
        os.closerange(3, keep_fd)
        os.closerange(keep_fd + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        if self.child_flags:
            linux.unshare(self.child_flags)
        if self.child_flags & linux.CLONE_NEWUTS:
            linux.sethostname("sandbox")
        if self.report.available.get("mount_namespace"):
            self._mount_private_dirs(uid)
        if self.session_userns:
            # After the mounts (/proc needs privilege over the owner of the PID namespace), before the
            # chroot (the kernel refuses new user namespaces to chrooted processes).
            _enter_own_user_namespace(*self.host_ids)
        if self.report.available.get("mount_namespace"):
            os.chroot(self.rootfs)
        os.chdir("/tmp" if self.report.available.get("mount_namespace") else _fallback_scratch(uid))
        self._set_limits()
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
        if self.report.available["dedicated_uid"]:
            _become(uid)
        elif self.report.running_as_root or self.userns:
            _drop_capabilities()
        else:
            linux.drop_all_capabilities()
        os.environ.clear()
        os.environ.update(
            {
                "HOME": "/tmp",
                "TMPDIR": "/tmp",
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "LANG": "C.UTF-8",
                "MPLBACKEND": "Agg",
                "OMP_NUM_THREADS": "1",
            }
        )
        sys.dont_write_bytecode = True
        if self.seccomp_program is not None:
            seccomp.install(self.seccomp_program)

    def _mount_private_dirs(self, uid: int) -> None:
        root = self.rootfs
        flags = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
        owner = uid if self.report.available["dedicated_uid"] else os.geteuid()
        inodes = max(1024, self.config.scratch_mb * 64)
        linux.mount(
            "tmpfs",
            root + "/tmp",
            "tmpfs",
            linux.MS_NOSUID | linux.MS_NODEV,
            f"mode=0700,uid={owner},gid={owner},size={self.config.scratch_mb}m,nr_inodes={inodes}",
        )
        for path in self.paths_under_tmp:
            self._bind(path)
        if self.package_under_tmp:
            self._hide_package_sources()
        linux.mount("proc", root + "/proc", "proc", flags, "hidepid=2")
        # The kernel command line describes the host, not the session.
        linux.mount("/dev/null", root + "/proc/cmdline", None, linux.MS_BIND)
        linux.mount(None, root + "/proc/cmdline", None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY)

    def _set_limits(self) -> None:
        cfg = self.config
        mib = 1024 * 1024
        baseline = _address_space_bytes()
        limits = {
            resource.RLIMIT_AS: baseline + cfg.memory_mb * mib,
            resource.RLIMIT_CPU: (cfg.session_cpu_seconds, cfg.session_cpu_seconds + 1),
            resource.RLIMIT_FSIZE: cfg.max_file_mb * mib,
            resource.RLIMIT_NOFILE: cfg.max_open_files,
            resource.RLIMIT_CORE: 0,
            resource.RLIMIT_MEMLOCK: 0,
            resource.RLIMIT_MSGQUEUE: 0,
        }
        if self.report.available["dedicated_uid"] or self.session_userns:
            # The kernel counts processes per uid and user namespace: meaningful only when the uid is
            # the session's own, or the session is alone in a user namespace of its own.
            limits[resource.RLIMIT_NPROC] = cfg.max_processes
        for which, value in limits.items():
            soft, hard = value if isinstance(value, tuple) else (value, value)
            resource.setrlimit(which, (soft, hard))


def _continue_in_own_pid_namespace() -> None:
    """Carry on as PID 1 of a new PID namespace owned by the fork server's user namespace.

    Sessions get their PID namespace by ``unshare(CLONE_NEWPID)`` before a fork and a ``setns``
    back afterwards. Without real root that ``setns`` into the host's PID namespace is refused
    (it needs CAP_SYS_ADMIN over the host's user namespace), so the fork server first moves into a
    PID namespace of its own user namespace, to which it may return. The calling process stays
    behind as a shim that waits for the fork server and exits as it did; when the shim is killed,
    the fork server is killed too (and with it, as PID 1 of its namespace, every session).
    If the PID namespace cannot be created, the fork server carries on where it is and the PID
    namespace probe reports why.
    """
    try:
        linux.unshare(linux.CLONE_NEWPID)
    except OSError:
        return
    pid = os.fork()
    if pid == 0:
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
        return
    # Only the fork server may hold the control socket, so that the host sees it close when it exits.
    os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    os._exit(status if status >= 0 else 128 - status)


def _enter_own_user_namespace(inner_uid: int, inner_gid: int) -> None:
    """Move the calling process into a new user namespace, where its ids read as ``inner_uid/gid``.

    Sessions map their ids back to the host uid and gid they really run as, so that no id in their
    namespace is 0 and code that checks whether it runs as root is told the truth.
    """
    outer_uid, outer_gid = os.getuid(), os.getgid()
    linux.unshare(linux.CLONE_NEWUSER)
    linux.write_id_maps(outer_uid, outer_gid, inner_uid, inner_gid)


def _probe_process_limit() -> None:
    """Check that RLIMIT_NPROC counts the processes of a user namespace, not of the host uid.

    Since Linux 5.14 the kernel counts processes per uid *and* user namespace, so a session alone
    in a user namespace of its own has a process budget of its own although it shares the host
    uid. Older kernels count every process of the host uid: this probe, which shares that uid with
    at least the fork server and the host process, then cannot fork under a limit of two.
    """
    _enter_own_user_namespace(os.getuid(), os.getgid())
    resource.setrlimit(resource.RLIMIT_NPROC, (2, 2))
    try:
        pid = os.fork()
    except BlockingIOError as exc:
        raise OSError("this kernel counts processes per host uid, not per user namespace") from exc
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def _become(uid: int) -> None:
    """Switch every uid and gid to ``uid``; as the last root step this also clears all capabilities."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def _drop_capabilities() -> None:
    """Without a uid to switch to: drop capabilities and lock them out for good (also across exec)."""
    linux.prctl(linux.PR_SET_SECUREBITS, linux.SECUREBITS_NO_ROOT_PRIVILEGES)
    linux.drop_all_capabilities()


def _under(path: str, parent: str) -> bool:
    try:
        return os.path.commonpath([path, parent]) == parent
    except ValueError:
        return False


def _statm_bytes(field_index: int) -> int:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[field_index])
    return pages * os.sysconf("SC_PAGE_SIZE")


def _address_space_bytes() -> int:
    return _statm_bytes(0)


def _resident_bytes() -> int:
    """Pages a session may copy-on-write from the fork server; its memory limit allows for them."""
    return _statm_bytes(1)


def _fallback_scratch(uid: int) -> str:
    """Without a mount namespace the scratch directory is a fresh private dir on the host /tmp."""
    import tempfile

    path = tempfile.mkdtemp(prefix=f"codevision-scratch-{uid}-")
    os.chmod(path, stat.S_IRWXU)
    return path
