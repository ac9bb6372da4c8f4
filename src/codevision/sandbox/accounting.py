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


#: Every live process: its parent and the CPU seconds it accounts for.
ProcessTable = dict[int, tuple[int, float]]


def process_table() -> ProcessTable:
    """One pass over /proc; read once per poll and shared by every session's tree."""
    table: ProcessTable = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(entry)
            if stat is not None:
                table[int(entry)] = stat
    return table


def process_tree(root: int, table: ProcessTable | None = None) -> dict[int, float]:
    """``root`` and its live descendants, each with the CPU seconds it accounts for (from ``table``, else
    from a fresh read of /proc)."""
    table = process_table() if table is None else table
    if root not in table:
        return {}
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found = {root: table[root][1]}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found[child] = table[child][1]
                todo.append(child)
    return found
