"""Per-session memory and process-count limits through control groups (v1 or delegated v2).

rlimits bound a process's address space, but not memory a session holds outside it:
files in its tmpfs, ``memfd`` buffers, pipe buffers, or the sum over its processes. A
memory cgroup charges all of that to the session, and a pids cgroup bounds its process
tree independently of uids. Each session gets its own group under one group per fork server.
Where the hierarchy accounts CPU time (v1 ``cpuacct``, every v2 group's ``cpu.stat``), the
session's group also gives the CPU time of all its processes together, which the fork server
holds against the session's CPU budget.
"""

from __future__ import annotations

import contextlib
import itertools
import os

CGROUP_ROOT = "/sys/fs/cgroup"


def _own_paths() -> dict[str, str]:
    """Map controller name ('' for the v2 hierarchy) to this process's cgroup path."""
    paths: dict[str, str] = {}
    with open("/proc/self/cgroup") as fh:
        for line in fh:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(","):
                paths[controller] = path
    return paths


def _write(path: str, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


class CgroupLimiter:
    """Creates, joins, inspects and removes one cgroup per session."""

    def __init__(self, bases: dict[str, str], version: int) -> None:
        self.bases = bases  # controller -> directory of this fork server's parent group
        self.version = version
        self._counter = itertools.count()
        self._sessions: dict[int, list[str]] = {}
        self._pending_removal: list[str] = []

    @classmethod
    def create(cls, name: str) -> CgroupLimiter:
        """Set up the fork server's group; raises ``OSError`` saying why cgroups cannot be used."""
        own = _own_paths()
        v1 = {c: os.path.join(CGROUP_ROOT, c) for c in ("memory", "pids", "cpuacct")}
        if all(os.path.isfile(os.path.join(v1[c], "cgroup.procs")) for c in ("memory", "pids")):
            bases = {}
            for controller, root in v1.items():
                if controller == "cpuacct" and not os.path.isfile(os.path.join(root, "cpuacct.usage")):
                    continue  # CPU accounting is optional: without it, the fork server sums /proc instead
                base = os.path.join(root + own.get(controller, "/").rstrip("/"), name)
                try:
                    os.makedirs(base, exist_ok=True)
                except OSError:
                    if controller == "cpuacct":
                        continue
                    raise
                bases[controller] = base
            return cls(bases, 1)
        controllers_file = os.path.join(CGROUP_ROOT, "cgroup.controllers")
        if os.path.isfile(controllers_file):
            parent = CGROUP_ROOT + own.get("", "/").rstrip("/")
            with open(os.path.join(parent, "cgroup.subtree_control")) as fh:
                delegated = set(fh.read().split())
            if not {"memory", "pids"} <= delegated:
                raise OSError(f"cgroup v2: the memory and pids controllers are not delegated to {parent}")
            base = os.path.join(parent, name)
            os.makedirs(base, exist_ok=True)
            _write(os.path.join(base, "cgroup.subtree_control"), "+memory +pids")
            return cls({"memory": base, "pids": base, "cpuacct": base}, 2)
        raise OSError("no cgroup hierarchy with memory and pids controllers is mounted")

    def prepare_session(self, slot: int, memory_bytes: int, max_pids: int) -> list[str]:
        """Create the session's group(s) with their limits; the session joins them itself."""
        name = f"s{slot}-{next(self._counter)}"
        dirs = sorted({os.path.join(base, name) for base in self.bases.values()})
        for path in dirs:
            os.mkdir(path)
        memory_dir = os.path.join(self.bases["memory"], name)
        pids_dir = os.path.join(self.bases["pids"], name)
        if self.version == 1:
            _write(os.path.join(memory_dir, "memory.limit_in_bytes"), str(memory_bytes))
            swap_limit = os.path.join(memory_dir, "memory.memsw.limit_in_bytes")
            if os.path.exists(swap_limit):
                _write(swap_limit, str(memory_bytes))
        else:
            _write(os.path.join(memory_dir, "memory.max"), str(memory_bytes))
            with contextlib.suppress(OSError):
                _write(os.path.join(memory_dir, "memory.swap.max"), "0")
        _write(os.path.join(pids_dir, "pids.max"), str(max_pids))
        self._sessions[slot] = dirs
        return dirs

    def cpu_seconds(self, slot: int) -> float | None:
        """CPU time used by every process of the session so far (None: this hierarchy does not account it)."""
        base = self.bases.get("cpuacct")
        dirs = self._sessions.get(slot)
        if base is None or not dirs:
            return None
        path = next((d for d in dirs if os.path.dirname(d) == base), None)
        if path is None:
            return None
        try:
            if self.version == 1:
                with open(os.path.join(path, "cpuacct.usage")) as fh:
                    return int(fh.read()) / 1e9
            with open(os.path.join(path, "cpu.stat")) as fh:
                for line in fh:
                    key, _, value = line.partition(" ")
                    if key == "usage_usec":
                        return int(value) / 1e6
        except (OSError, ValueError):
            return None
        return None

    @staticmethod
    def join(dirs: list[str]) -> None:
        """Move the calling process into the session's group(s); runs in the session before confinement."""
        for path in dirs:
            _write(os.path.join(path, "cgroup.procs"), "0")

    def oom_killed(self, slot: int) -> bool:
        """Whether the kernel killed a process of this session for exceeding its memory limit."""
        for path in self._sessions.get(slot, []):
            events = os.path.join(path, "memory.oom_control" if self.version == 1 else "memory.events")
            with contextlib.suppress(OSError), open(events) as fh:
                for line in fh:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill" and int(value) > 0:
                        return True
        return False

    @property
    def pending(self) -> bool:
        return bool(self._pending_removal)

    def release(self, slot: int) -> None:
        self._pending_removal.extend(self._sessions.pop(slot, []))
        self.sweep()

    def sweep(self) -> None:
        """Remove emptied groups; processes of a killed session may take a moment to exit."""
        still_busy = []
        for path in self._pending_removal:
            try:
                os.rmdir(path)
            except FileNotFoundError:
                pass
            except OSError:
                still_busy.append(path)
        self._pending_removal = still_busy

    def close(self) -> None:
        for slot in list(self._sessions):
            self.release(slot)
        self.sweep()
        for base in set(self.bases.values()):
            with contextlib.suppress(OSError):
                os.rmdir(base)
