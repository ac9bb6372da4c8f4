"""CPU time of a session's whole process tree, read from /proc where no cgroup accounts it.

rlimits are per process: three forked spinners each get the full budget, and children go on
burning CPU after a run returns. The fork server therefore holds the *sum* over a session's
processes against its budget. A cgroup gives that sum directly; without one, it is read here:
every live process of the tree with the time of the children it already reaped.
"""

from __future__ import annotations

import os

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: str) -> tuple[int, float] | None:
    """Parent pid and CPU seconds (own and reaped children's) of one process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        parent = int(fields[1])
        utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    except (IndexError, ValueError):
        return None
    return parent, (utime + stime + cutime + cstime) / _TICKS


def process_tree(root: int) -> dict[int, float]:
    """``root`` and its live descendants, each with the CPU seconds it accounts for."""
    table: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(entry)
            if stat is not None:
                table[int(entry)] = stat
    if root not in table:
        return {}
    found = {root: table[root][1]}
    grew = True
    while grew:
        below = {pid: seconds for pid, (parent, seconds) in table.items() if parent in found and pid not in found}
        found.update(below)
        grew = bool(below)
    return found
