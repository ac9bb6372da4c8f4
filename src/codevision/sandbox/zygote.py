"""The fork server: a clean interpreter that preloads the imaging libraries and forks sessions.

It is started by :class:`codevision.sandbox.Sandbox` with an empty environment and no
inherited descriptors besides its control socket, so its memory holds no secrets or
labels of the caller that a forked session could read. It keeps a few confined session
processes ready, hands their sockets to the host on request, kills them on request, and
reaps them; it never runs model code itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys
import time
from collections import deque
from typing import Any

from codevision.sandbox.accounting import ProcessTable, process_table, process_tree

CONTROL_MESSAGE_BYTES = 1 << 20
#: How often the CPU time of every live session is held against its budget.
CPU_POLL_SECONDS = 0.1


def _preload() -> None:
    """Import what model code uses, once, so each forked session starts warm."""
    import base64  # noqa: F401
    import collections  # noqa: F401
    import colorsys  # noqa: F401
    import copy  # noqa: F401
    import csv  # noqa: F401
    import dataclasses  # noqa: F401
    import datetime  # noqa: F401
    import fractions  # noqa: F401
    import functools  # noqa: F401
    import glob  # noqa: F401
    import heapq  # noqa: F401
    import itertools  # noqa: F401
    import json as _json  # noqa: F401
    import pathlib  # noqa: F401
    import random  # noqa: F401
    import re  # noqa: F401
    import statistics  # noqa: F401
    import string  # noqa: F401
    import tempfile  # noqa: F401
    import textwrap  # noqa: F401
    import typing  # noqa: F401

    import cv2
    import matplotlib
    import numpy  # noqa: F401

    cv2.setNumThreads(1)
    matplotlib.use("Agg")
    import matplotlib.pyplot
    from PIL import (  # noqa: F401
        Image,
        ImageChops,
        ImageColor,
        ImageDraw,
        ImageEnhance,
        ImageFilter,
        ImageFont,
        ImageOps,
        ImageStat,
    )

    Image.init()
    ImageFont.load_default()

    from codevision.sandbox import runtime, tracing  # noqa: F401

    tracing.install()


def _python_paths() -> list[str]:
    import codevision

    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(codevision.__file__)))
    candidates = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, package_parent, *sys.path]
    return [os.path.abspath(p) for p in candidates if p and os.path.isdir(p)]


SOCKET_BUFFER_BYTES = 4 * 1024 * 1024
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33


def _enlarge_buffers(sock: socket.socket) -> None:
    """Megapixel images pass in fewer, larger writes (root may exceed the sysctl maximum)."""
    for forced, plain in ((SO_SNDBUFFORCE, socket.SO_SNDBUF), (SO_RCVBUFFORCE, socket.SO_RCVBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, forced, SOCKET_BUFFER_BYTES)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, SOCKET_BUFFER_BYTES)


class ForkServer:
    """Event loop of the fork server: requests from the host plus SIGCHLD for reaping."""

    def __init__(self, control: socket.socket, confiner: Any, prefork: int) -> None:
        self.control = control
        self.confiner = confiner
        self.prefork = prefork
        self.idle: deque[tuple[int, socket.socket]] = deque()
        self.live: dict[int, int] = {}  # pid -> slot
        self.uids: dict[int, int] = {}  # pid -> uid
        self.exits: dict[int, dict[str, Any]] = {}
        self.spent: dict[int, float] = {}  # pid -> CPU seconds when its session was killed for its budget
        self.checked = 0.0
        self.free_slots = list(range(1023, -1, -1))
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w)

    def _spawn(self) -> tuple[int, socket.socket]:
        if not self.free_slots:
            raise RuntimeError("too many live sessions in this fork server (1024)")
        slot = self.free_slots.pop()
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        for sock in (parent_sock, child_sock):
            _enlarge_buffers(sock)
        uid = self.confiner.new_session_uid()
        try:
            pid = self.confiner.fork_session(slot, uid, child_sock)
        except BaseException:
            self.free_slots.append(slot)
            parent_sock.close()
            raise
        finally:
            child_sock.close()
        self.live[pid] = slot
        self.uids[pid] = uid
        return pid, parent_sock

    def _reap(self) -> None:
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._record_exit(pid, status, usage)

    def _record_exit(self, pid: int, status: int, usage: Any) -> None:
        slot = self.live.pop(pid, None)
        self.uids.pop(pid, None)
        info: dict[str, Any] = {
            "exit_code": None,
            "signal": None,
            "oom_killed": False,
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
        }
        if pid in self.spent:
            info["cpu_exhausted"] = True
            info["cpu_seconds"] = round(max(info["cpu_seconds"], self.spent.pop(pid)), 3)
        if slot is not None:
            self.free_slots.append(slot)
            cgroups = self.confiner.cgroups
            if cgroups is not None:
                info["oom_killed"] = cgroups.oom_killed(slot)
                cgroups.release(slot)
        if os.WIFSIGNALED(status):
            info["signal"] = os.WTERMSIG(status)
        elif os.WIFEXITED(status):
            info["exit_code"] = os.WEXITSTATUS(status)
        self.exits[pid] = info
        if len(self.exits) > 4096:
            self.exits.pop(next(iter(self.exits)))
        for entry in list(self.idle):
            if entry[0] == pid:
                self.idle.remove(entry)
                entry[1].close()

    def _terminate(self, pid: int, grace: float = 0.0) -> dict[str, Any]:
        """Kill a session process (and, through its PID namespace, everything it started).

        With ``grace``, a process that is already on its way out gets that long to exit by itself,
        so its own exit status (a crash, ``os._exit``) is reported rather than our kill.
        """
        killed = False
        if pid in self.live:
            deadline = time.monotonic() + grace
            try:
                while True:
                    reaped, status, usage = os.wait4(pid, os.WNOHANG)
                    if reaped or time.monotonic() >= deadline:
                        break
                    time.sleep(0.002)
                if not reaped:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                        killed = True
                    _, status, usage = os.wait4(pid, 0)
                self._record_exit(pid, status, usage)
            except ChildProcessError:
                self.live.pop(pid, None)
        info = dict(self.exits.get(pid) or {"exit_code": None, "signal": None, "oom_killed": False})
        info["killed"] = killed
        return info

    def _enforce_cpu_budgets(self) -> None:
        """Kill every session whose processes together used up its CPU budget, between runs too."""
        self.checked = time.monotonic()
        budget = self.confiner.config.session_cpu_seconds
        cgroups = self.confiner.cgroups
        table: ProcessTable | None = None  # /proc is read at most once per poll, whatever the number of sessions
        for pid, slot in list(self.live.items()):
            if pid in self.spent:
                continue
            used = cgroups.cpu_seconds(slot) if cgroups is not None else None
            tree = None
            if used is None:
                table = process_table() if table is None else table
                tree = process_tree(pid, table)
                used = sum(tree.values())
            if used < budget:
                continue
            self.spent[pid] = used
            # Without a PID namespace the session's children would outlive it: kill the whole tree.
            for member in tree or process_tree(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(member, signal.SIGKILL)

    def _handle(self, request: dict[str, Any]) -> bool:
        op = request.get("op")
        if op == "spawn":
            try:
                pid, sock = self.idle.popleft() if self.idle else self._spawn()
            except (OSError, RuntimeError) as exc:
                self._send({"ok": False, "error": f"cannot start a session: {exc}"})
                return True
            uid = self.uids.get(pid)
            socket.send_fds(self.control, [json.dumps({"ok": True, "pid": pid, "uid": uid}).encode()], [sock.fileno()])
            sock.close()
        elif op == "kill":
            if int(request["pid"]) in self.live:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(request["pid"]), signal.SIGKILL)
            self._send({"ok": True})
        elif op == "terminate":
            grace = min(float(request.get("grace", 0.0)), 1.0)
            self._send({"ok": True, **self._terminate(int(request["pid"]), grace)})
        elif op == "stats":
            self._send({"ok": True, "live": len(self.live), "idle": len(self.idle)})
        elif op == "shutdown":
            return False
        else:
            self._send({"ok": False, "error": f"unknown op {op!r}"})
        return True

    def _send(self, message: dict[str, Any]) -> None:
        self.control.send(json.dumps(message).encode())

    def serve(self) -> None:
        running = True
        while running:
            cgroups = self.confiner.cgroups
            timeout = 0.0 if len(self.idle) < self.prefork else (1.0 if cgroups and cgroups.pending else None)
            if self.live:
                timeout = CPU_POLL_SECONDS if timeout is None else min(timeout, CPU_POLL_SECONDS)
            readable, _, _ = select.select([self.control, self.wake_r], [], [], timeout)
            if self.live and time.monotonic() - self.checked >= CPU_POLL_SECONDS:
                self._enforce_cpu_budgets()
            if self.wake_r in readable:
                os.read(self.wake_r, 4096)
                self._reap()
            if cgroups is not None:
                cgroups.sweep()
            if self.control in readable:
                data = self.control.recv(CONTROL_MESSAGE_BYTES)
                if not data:
                    break
                running = self._handle(json.loads(data))
            elif not readable and len(self.idle) < self.prefork:
                self.idle.append(self._spawn())
        self.shutdown()

    def shutdown(self) -> None:
        for pid in list(self.live):
            self._terminate(pid)
        if self.confiner.cgroups is not None:
            self.confiner.cgroups.close()


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    from codevision.sandbox.config import SandboxConfig
    from codevision.sandbox.confine import Confiner

    config = SandboxConfig.model_validate_json(sys.argv[2])
    rootfs = sys.argv[3]
    try:
        _preload()
        confiner = Confiner(config, rootfs, _python_paths())
        report = confiner.prepare()
    except BaseException as exc:
        control.send(json.dumps({"ok": False, "error": f"fork server failed to start: {exc!r}"}).encode())
        raise
    with open("/proc/self/statm") as fh:
        baseline_mb = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    control.send(
        json.dumps(
            {
                "ok": True,
                "pid": confiner.server_pid,
                "isolation": report.to_dict(),
                "baseline_mb": round(baseline_mb, 1),
            }
        ).encode()
    )
    server = ForkServer(control, confiner, config.prefork_count)
    server.serve()


if __name__ == "__main__":
    main()
