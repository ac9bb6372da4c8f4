"""CPU time of a process tree from /proc: what holds a session to its budget where no cgroup accounts it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from codevision.sandbox.accounting import process_table, process_tree

SPIN = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end:\n    pass\ntime.sleep(30)"


def test_the_tree_sums_live_children_and_reaped_ones() -> None:
    # A parent that starts two spinners and reaps a third after it spun: all four count.
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            f"spin = {SPIN!r}\n"
            "done = subprocess.run([sys.executable, '-c', spin.replace('time.sleep(30)', '')])\n"
            "children = [subprocess.Popen([sys.executable, '-c', spin]) for _ in range(2)]\n"
            "time.sleep(30)",
        ]
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            tree = process_tree(parent.pid)
            if len(tree) == 3 and sum(tree.values()) >= 1.7:
                break
            time.sleep(0.1)
        assert len(tree) == 3, tree  # the parent and its two live children
        assert sum(tree.values()) >= 1.7, tree  # three spinners of 0.6 s, one of them reaped
        assert process_tree(2**22 + 7) == {}
    finally:
        for pid in process_tree(parent.pid):
            subprocess.run(["kill", "-9", str(pid)], check=False)
        parent.wait()


def test_one_read_of_proc_serves_every_session_tree() -> None:
    """The fork server reads /proc once per poll: a tree from that shared table is the tree, at any depth."""
    table = {10: (1, 0.5), 11: (10, 1.0), 12: (11, 2.0), 13: (12, 0.25), 20: (1, 9.0), 21: (20, 9.0), 1: (0, 0.0)}
    assert process_tree(10, table) == {10: 0.5, 11: 1.0, 12: 2.0, 13: 0.25}
    assert process_tree(20, table) == {20: 9.0, 21: 9.0}
    assert process_tree(99, table) == {}
    live = process_table()
    assert process_tree(os.getpid(), live)[os.getpid()] == live[os.getpid()][1]
