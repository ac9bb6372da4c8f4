"""CPU time of a process tree from /proc: what holds a session to its budget where no cgroup accounts it."""

from __future__ import annotations

import subprocess
import sys
import time

from codevision.sandbox.accounting import process_tree

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
