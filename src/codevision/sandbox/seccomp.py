"""A small seccomp filter: system calls no image code needs answer ``ENOSYS``.

Namespaces, uids and limits already confine a session; this removes kernel surface on top:
the kernel keyring (which outlives processes and would let one session leave data for a
later one), tracing and cross-process memory access, BPF, perf, userfaultfd, io_uring,
and the calls that change mounts, namespaces or the running kernel. The filter denies by
list rather than allowing by list, so ordinary Python, NumPy, OpenCV and subprocesses work.

Three more channels are closed because concurrent sessions share inodes (the read-only root) or
kernel objects outside their namespaces:

* sockets of every address family but ``AF_UNIX`` (``EAFNOSUPPORT``): the network namespace
  isolates IP and netlink, but not ``AF_VSOCK``, which reaches the host's and the hypervisor's
  port space;
* file change notifications (``inotify``, ``fanotify``, ``fcntl(F_NOTIFY)``), which would let a
  session watch another read the shared files;
* file locks and leases (``flock``, ``fcntl`` record, open-file-description and lease commands,
  ``ENOLCK``), which another session could test on the same shared file.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

from codevision.sandbox import linux

_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_ERRNO = 0x00050000

# BPF opcodes
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_X32_SYSCALL_BIT = 0x40000000
_RET_K = 0x06

# struct seccomp_data: nr, arch, instruction pointer, then six 64-bit arguments (low word first).
_OFFSET_NR = 0
_OFFSET_ARCH = 4
_OFFSET_ARG0 = 16
_OFFSET_ARG1 = 24

_AF_UNIX = 1
# fcntl commands: record locks, open-file-description locks, leases and directory notifications.
_FCNTL_DENIED = (5, 6, 7, 36, 37, 38, 1024, 1025, 1026)  # F_GETLK..F_SETLKW, F_OFD_*, F_SETLEASE, F_GETLEASE, F_NOTIFY

DENIED = (
    "add_key", "request_key", "keyctl",
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns",
    "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    "swapon", "swapoff", "reboot", "kexec_load", "kexec_file_load",
    "init_module", "finit_module", "delete_module",
    "acct", "quotactl", "lookup_dcookie", "open_by_handle_at", "name_to_handle_at",
    "syslog", "settimeofday", "clock_settime", "adjtimex", "clock_adjtime", "sethostname", "setdomainname",
    "personality", "vhangup", "iopl", "ioperm",
    "inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch", "fanotify_init", "fanotify_mark",
    "flock",
)  # fmt: skip

_X86_64 = {
    "add_key": 248, "request_key": 249, "keyctl": 250, "ptrace": 101, "process_vm_readv": 310,
    "process_vm_writev": 311, "kcmp": 312, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "mount": 165, "umount2": 166,
    "pivot_root": 155, "chroot": 161, "unshare": 272, "setns": 308, "open_tree": 428, "move_mount": 429,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442, "swapon": 167,
    "swapoff": 168, "reboot": 169, "kexec_load": 246, "kexec_file_load": 320, "init_module": 175,
    "finit_module": 313, "delete_module": 176, "acct": 163, "quotactl": 179, "lookup_dcookie": 212,
    "open_by_handle_at": 304, "name_to_handle_at": 303, "syslog": 103, "settimeofday": 164,
    "clock_settime": 227, "adjtimex": 159, "clock_adjtime": 305, "sethostname": 170, "setdomainname": 171,
    "personality": 135, "vhangup": 153, "iopl": 172, "ioperm": 173,
    "inotify_init": 253, "inotify_init1": 294, "inotify_add_watch": 254, "inotify_rm_watch": 255,
    "fanotify_init": 300, "fanotify_mark": 301, "flock": 73,
    "socket": 41, "socketpair": 53, "fcntl": 72,
}  # fmt: skip

_AARCH64 = {
    "add_key": 217, "request_key": 218, "keyctl": 219, "ptrace": 117, "process_vm_readv": 270,
    "process_vm_writev": 271, "kcmp": 272, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "mount": 40, "umount2": 39,
    "pivot_root": 41, "chroot": 51, "unshare": 97, "setns": 268, "open_tree": 428, "move_mount": 429,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442, "swapon": 224,
    "swapoff": 225, "reboot": 142, "kexec_load": 104, "kexec_file_load": 294, "init_module": 105,
    "finit_module": 273, "delete_module": 106, "acct": 89, "quotactl": 60, "lookup_dcookie": 18,
    "open_by_handle_at": 265, "name_to_handle_at": 264, "syslog": 116, "settimeofday": 170,
    "clock_settime": 112, "adjtimex": 171, "clock_adjtime": 266, "sethostname": 161, "setdomainname": 162,
    "personality": 92, "vhangup": 58,
    "inotify_init1": 26, "inotify_add_watch": 27, "inotify_rm_watch": 28, "fanotify_init": 262,
    "fanotify_mark": 263, "flock": 32,
    "socket": 198, "socketpair": 199, "fcntl": 25,
}  # fmt: skip

# (audit architecture value, syscall table)
_ARCHES = {"x86_64": (0xC000003E, _X86_64), "aarch64": (0xC00000B7, _AARCH64)}


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _instruction(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


_Instruction = tuple[int, "int | str", "int | str", int]


def _assemble(program: list[_Instruction | str]) -> bytes:
    """BPF from instructions whose jump targets may be labels (strings standing alone in the list)."""
    labels: dict[str, int] = {}
    instructions: list[_Instruction] = []
    for item in program:
        if isinstance(item, str):
            labels[item] = len(instructions)
        else:
            instructions.append(item)
    out = []
    for position, (code, jt, jf, k) in enumerate(instructions):
        offsets = [labels[target] - position - 1 if isinstance(target, str) else target for target in (jt, jf)]
        if not all(0 <= offset <= 255 for offset in offsets):
            raise ValueError(f"seccomp jump out of range at instruction {position}")
        out.append(_instruction(code, offsets[0], offsets[1], k))
    return b"".join(out)


def build_filter(machine: str | None = None) -> bytes:
    """The BPF program for this machine; raises ``OSError`` on an architecture we have no table for."""
    machine = machine or platform.machine()
    if machine not in _ARCHES:
        raise OSError(f"no seccomp syscall table for architecture {machine}")
    audit_arch, table = _ARCHES[machine]
    numbers = sorted({table[name] for name in DENIED if name in table})
    program: list[_Instruction | str] = [
        (_LD_W_ABS, 0, 0, _OFFSET_ARCH),
        # A foreign-ABI call (e.g. 32-bit on x86_64) would bypass the table: refuse it outright.
        (_JEQ_K, 1, 0, audit_arch),
        (_RET_K, 0, 0, _SECCOMP_RET_ERRNO | errno.ENOSYS),
        (_LD_W_ABS, 0, 0, _OFFSET_NR),
        (_JGE_K, "enosys", 0, _X32_SYSCALL_BIT),
        (_JEQ_K, "family", 0, table["socket"]),
        (_JEQ_K, "family", 0, table["socketpair"]),
        (_JEQ_K, "fcntl", 0, table["fcntl"]),
        *((_JEQ_K, "enosys", 0, number) for number in numbers),
        (_RET_K, 0, 0, _SECCOMP_RET_ALLOW),
        "family",
        (_LD_W_ABS, 0, 0, _OFFSET_ARG0),
        (_JEQ_K, "allow", 0, _AF_UNIX),
        (_RET_K, 0, 0, _SECCOMP_RET_ERRNO | errno.EAFNOSUPPORT),
        "fcntl",
        (_LD_W_ABS, 0, 0, _OFFSET_ARG1),
        *((_JEQ_K, "enolck", 0, command) for command in _FCNTL_DENIED),
        "allow",
        (_RET_K, 0, 0, _SECCOMP_RET_ALLOW),
        "enolck",
        (_RET_K, 0, 0, _SECCOMP_RET_ERRNO | errno.ENOLCK),
        "enosys",
        (_RET_K, 0, 0, _SECCOMP_RET_ERRNO | errno.ENOSYS),
    ]
    return _assemble(program)


def install(program: bytes) -> None:
    """Load ``program`` for this thread and its future children (needs no_new_privs or CAP_SYS_ADMIN)."""
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    linux.prctl_pointer(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(fprog))
