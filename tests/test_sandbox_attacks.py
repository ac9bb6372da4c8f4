"""Hostile and broken programs run through the sandbox.

Every test runs a program that attacks the host, the sandbox or other sessions (or is
simply broken), asserts a specific sign that the attack was contained, and then checks
that the sandbox keeps serving: a fresh session, and where the session is meant to
survive the same session, still runs ``print(1+1)`` correctly.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import secrets
import socket
import sys
import textwrap
import threading
import time
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from codevision.sandbox import RunResult, Sandbox, Session, SessionDeadError
from tests.conftest import OWN_TMP, gradient_image

# How the kernel refuses a call: no privilege, or the seccomp filter's answer.
DENIED = (errno.EPERM, errno.ESRCH, errno.ENOSYS)

GROUND_TRUTH = "label-xyz"
SECRET_ENV = "CODEVISION_TEST_SECRET"
SECRET_VALUE = "s3cr3t"

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN = secrets.token_hex(6)

MAX_PROCESSES = 16
MAX_OPEN_FILES = 128
MAX_FILE_MB = 8
SCRATCH_MB = 16
MEMORY_MB = 512
MAX_OUTPUT = 4096
PIXEL_BUDGET = 1_000_000
MAX_INPUT_PIXELS = 4_000_000
TIMEOUT = 1.0
KILL_GRACE = 0.5


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(
        workers=2,
        timeout=5.0,
        kill_grace=KILL_GRACE,
        memory_mb=MEMORY_MB,
        max_processes=MAX_PROCESSES,
        max_open_files=MAX_OPEN_FILES,
        max_file_mb=MAX_FILE_MB,
        scratch_mb=SCRATCH_MB,
        max_output_bytes=MAX_OUTPUT,
        max_image_pixels=PIXEL_BUDGET,
        max_input_pixels=MAX_INPUT_PIXELS,
    ) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def cpu_sb() -> Iterator[Sandbox]:
    """A tiny CPU budget with a long wall-clock limit: only the kernel CPU limit can stop a loop."""
    with Sandbox(workers=1, timeout=8.0, kill_grace=KILL_GRACE, memory_mb=MEMORY_MB, session_cpu_seconds=1) as sandbox:
        yield sandbox


# ---------------------------------------------------------------------- helpers
def code(text: str, **values: Any) -> str:
    """Dedent a program and substitute ``@NAME@`` placeholders with ``repr(value)``."""
    text = textwrap.dedent(text).strip("\n") + "\n"
    for name, value in values.items():
        text = text.replace(f"@{name}@", repr(value))
    return text


def last_json(result: RunResult) -> Any:
    assert result.status == "ok", (result.status, result.error)
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_serving(sandbox: Sandbox, session: Session | None = None) -> None:
    """The same session (when given) and a fresh one both still run code correctly."""
    if session is not None:
        again = session.run("print(1+1)")
        assert (again.status, again.stdout) == ("ok", "2\n"), again
    fresh = sandbox.run("print(1+1)")
    assert (fresh.status, fresh.stdout) == ("ok", "2\n"), fresh
    assert sandbox.status()["running"]


def assert_dead(session: Session) -> None:
    assert not session.alive
    with pytest.raises(SessionDeadError):
        session.run("print(1+1)")


def host_process_table() -> dict[int, tuple[int, int]]:
    """Host pid -> (parent pid, real uid) for every visible process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
            table[int(entry)] = (int(fields["PPid"]), int(fields["Uid"].split()[0]))
        except (OSError, KeyError, ValueError):
            continue
    return table


def host_descendants(root: int) -> set[int]:
    """``root`` and every host process below it."""
    table = host_process_table()
    found = {root} if root in table else set()
    grew = True
    while grew:
        below = {pid for pid, (ppid, _) in table.items() if ppid in found} - found
        found |= below
        grew = bool(below)
    return found


def still_running(pids: set[int], uid: int) -> set[int]:
    table = host_process_table()
    return {pid for pid in pids if pid in table and table[pid][1] == uid}


def process_state(pid: int) -> str:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("State:"):
                return line.split()[1]
    return "?"


def shifted_hex(text: str) -> str:
    """The text with every byte shifted by one: scanning code can carry it without holding it."""
    return bytes((b + 1) % 256 for b in text.encode()).hex()


@pytest.fixture
def tcp_listener() -> Iterator[socket.socket]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    yield server
    server.close()


def accepted_nothing(server: socket.socket) -> bool:
    time.sleep(0.1)
    try:
        conn, _ = server.accept()
    except BlockingIOError:
        return True
    conn.close()
    return False


# ---------------------------------------------------------------------- process and thread exhaustion
def test_fork_bomb_stops_at_the_process_limit(sb: Sandbox) -> None:
    """Fork bomb whose children stay alive: fork() fails with EAGAIN below max_processes."""
    program = code("""
        import os, time
        children = []
        try:
            while True:
                pid = os.fork()
                if pid == 0:
                    time.sleep(30)
                    os._exit(0)
                children.append(pid)
        except OSError as exc:
            print(len(children), exc.errno)
    """)
    with sb.session() as s:
        r = s.run(program)
        count, err = (int(v) for v in r.stdout.split())
        assert err == errno.EAGAIN
        assert 0 < count < MAX_PROCESSES
        assert_serving(sb, s)


def test_runaway_fork_bomb_is_capped_and_fully_reaped(sb: Sandbox) -> None:
    """Every child forks again forever: the host never sees more than max_processes of them,
    and closing the session removes every one."""
    bomb = code("""
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """)
    seen: set[int] = set()
    with sb.session() as s:
        uid = int(s.run("import os; print(os.getuid())").stdout)
        assert uid != 0
        root = s.pid
        assert root is not None
        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(s.run, bomb, TIMEOUT)
            # Sample while the bomb runs, before the run ends and its processes are torn down.
            until = time.monotonic() + TIMEOUT * 0.7
            peak = 0
            while time.monotonic() < until and not future.done():
                tree = host_descendants(root)
                seen |= tree
                peak = max(peak, len(tree))
                time.sleep(0.05)
            r = future.result()
        assert r.status in ("timeout", "killed"), r
        assert 1 < peak <= MAX_PROCESSES
    deadline = time.monotonic() + 5
    while still_running(seen, uid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert still_running(seen, uid) == set()
    assert_serving(sb)


def test_thread_exhaustion_fails_inside_the_session(sb: Sandbox) -> None:
    """Starting threads until it fails: the failure is a RuntimeError in model code."""
    program = code("""
        import threading, time
        threads = []
        try:
            while True:
                t = threading.Thread(target=time.sleep, args=(30,), daemon=True)
                t.start()
                threads.append(t)
        except RuntimeError as exc:
            print(len(threads), exc)
    """)
    with sb.session() as s:
        r = s.run(program)
        assert r.status == "ok", r.error
        count, message = r.stdout.split(" ", 1)
        assert "can't start new thread" in message
        assert int(count) < MAX_PROCESSES
        assert_serving(sb, s)


def test_fd_exhaustion_stops_at_the_open_files_limit(sb: Sandbox) -> None:
    """Opening descriptors without closing them: EMFILE at max_open_files, session still works."""
    program = code("""
        import os
        fds = []
        try:
            while True:
                fds.append(os.open('/dev/null', os.O_RDONLY))
        except OSError as exc:
            print(len(fds), exc.errno)
    """)
    with sb.session() as s:
        r = s.run(program)
        count, err = (int(v) for v in r.stdout.split())
        assert err == errno.EMFILE
        assert count < MAX_OPEN_FILES
        assert_serving(sb, s)


# ---------------------------------------------------------------------- memory
MEMORY_BOMBS = {
    "bytearray-8GiB": ("blob = bytearray(8 * 1024**3)", "MemoryError"),
    "bytearray-growing": ("chunks = []\nwhile True:\n    chunks.append(bytearray(64 * 1024**2))", "MemoryError"),
    "str-repeat": ("s = 'x' * 10**10", "MemoryError"),
    "numpy-ones": ("a = np.ones((60000, 60000))", "MemoryError"),
    "numpy-growing": ("arrays = [np.ones(2**24) for _ in range(100)]", "MemoryError"),
    "pil-image-new": ("im = Image.new('RGB', (60000, 60000))", "MemoryError"),
    "pil-resize": ("im = Image.new('L', (8, 8)).resize((50000, 50000))", "MemoryError"),
    "cv2-resize": ("cv2.resize(np.zeros((8, 8, 3), np.uint8), (40000, 40000))", "error"),
}


@pytest.mark.parametrize("program,error_type", MEMORY_BOMBS.values(), ids=MEMORY_BOMBS.keys())
def test_memory_bombs_raise_inside_the_session(sb: Sandbox, program: str, error_type: str) -> None:
    """Memory bombs through Python, NumPy, PIL and OpenCV hit the address-space limit as an
    exception in model code; the session survives."""
    with sb.session() as s:
        r = s.run(program)
        assert r.status == "error"
        assert r.error_type == error_type, r.error
        assert r.session_alive
        assert_serving(sb, s)


def test_memory_held_in_memfds_counts_against_the_memory_limit(sb: Sandbox) -> None:
    """Memory that is not mapped (memfd pages) escapes the address-space limit: a session
    must not hold more than memory_mb plus its scratch space. Where the kernel's memory cgroup
    stops it, the session is killed and the error says it ran out of memory."""
    program = code(
        """
        import os
        fds, held = [], 0
        try:
            for _ in range(80):
                fd = os.memfd_create('hoard')
                fds.append(fd)
                os.pwrite(fd, b'\\xa5' * (@CHUNK@ << 20), 0)
                held += @CHUNK@
        except OSError as exc:
            print('stopped', exc.errno)
        finally:
            for fd in fds:
                os.close(fd)
        print(held)
    """,
        CHUNK=MAX_FILE_MB,
    )
    with sb.session() as s:
        r = s.run(program)
        if r.status == "crashed":
            assert "ran out of memory" in (r.error or ""), r.error
            assert_serving(sb)
            return
        assert r.status == "ok", r.error
        held_mb = int(r.stdout.split()[-1])
        assert held_mb <= MEMORY_MB + SCRATCH_MB, f"the session held {held_mb} MiB in memfds"
        assert_serving(sb, s)


# ---------------------------------------------------------------------- disk
DISK_FILLERS = {
    "one-file-beyond-max-file-size": (
        code("""
        f = open('/tmp/big', 'wb', buffering=0)
        try:
            while True:
                f.write(b'x' * (1 << 20))
        except OSError as exc:
            import os
            print(exc.errno, os.path.getsize('/tmp/big'))
    """),
        errno.EFBIG,
        MAX_FILE_MB << 20,
    ),
    "many-files-fill-scratch": (
        code(
            """
        import os
        total, i = 0, 0
        try:
            while True:
                with open(f'/tmp/part{i}', 'wb', buffering=0) as f:
                    for _ in range(@MB@):
                        total += f.write(b'y' * (1 << 20))
                i += 1
        except OSError as exc:
            print(exc.errno, total)
    """,
            MB=MAX_FILE_MB,
        ),
        errno.ENOSPC,
        SCRATCH_MB << 20,
    ),
    "inode-exhaustion": (
        code("""
        count = 0
        try:
            while True:
                open(f'/tmp/empty{count}', 'w').close()
                count += 1
        except OSError as exc:
            print(exc.errno, count)
    """),
        errno.ENOSPC,
        1024,
    ),
}


@pytest.mark.parametrize("program,err,bound", DISK_FILLERS.values(), ids=DISK_FILLERS.keys())
def test_disk_filling_is_bounded(sb: Sandbox, program: str, err: int, bound: int) -> None:
    """Filling /tmp by size, by file count, or with one huge file: EFBIG or ENOSPC at the
    configured bound; the next session gets an empty scratch directory."""
    with sb.session() as s:
        r = s.run(program)
        assert r.status == "ok", r.error
        got_errno, amount = (int(v) for v in r.stdout.split())
        assert got_errno == err
        assert 0 < amount <= bound
        assert_serving(sb, s)
    fresh = sb.run(OWN_TMP + "st = os.statvfs('/tmp'); print(own_tmp, st.f_bavail * st.f_frsize)")
    listing, free = fresh.stdout.rsplit(" ", 1)
    assert listing == "[]"
    assert int(free) >= (SCRATCH_MB - 1) << 20


# ---------------------------------------------------------------------- output
def test_huge_stdout_is_capped_with_a_marker(sb: Sandbox) -> None:
    """Megabytes on stdout: the result keeps max_output_bytes, head and tail, and says how much was cut."""
    with sb.session() as s:
        r = s.run("import sys; sys.stdout.write('A' * 2_000_000 + 'B' * 3_000_000)")
        assert r.status == "ok"
        assert r.stdout_omitted == 5_000_000 - MAX_OUTPUT
        assert f"[... {r.stdout_omitted} bytes of output omitted ...]" in r.stdout
        assert len(r.stdout.encode()) <= MAX_OUTPUT + 100
        assert r.stdout.startswith("AAAA") and r.stdout.endswith("BBBB")
        assert_serving(sb, s)


def test_huge_stderr_from_a_subprocess_is_capped(sb: Sandbox) -> None:
    """Output written by a child process straight to fd 2 is captured and capped as well."""
    with sb.session() as s:
        r = s.run("import os; os.system('yes error | head -c 3000000 >&2')")
        assert r.status == "ok"
        assert r.stderr_omitted == 3_000_000 - MAX_OUTPUT
        assert f"[... {r.stderr_omitted} bytes of output omitted ...]" in r.stderr
        assert len(r.stderr.encode()) <= MAX_OUTPUT + 100
        assert r.stdout == ""
        assert_serving(sb, s)


def test_non_utf8_output_is_replaced_not_fatal(sb: Sandbox) -> None:
    """Raw invalid UTF-8 on sys.stdout.buffer and fd 1, and lone surrogates via print()."""
    program = code(r"""
        import os, sys
        sys.stdout.buffer.write(b'\xff\xfe bad \x80\n'); sys.stdout.flush()
        os.write(1, b'\xc3\x28 raw\n')
        print('\udcff lone')
    """)
    with sb.session() as s:
        r = s.run(program)
        assert r.status == "ok", r.error
        lines = r.stdout.splitlines()
        assert lines[0] == "\ufffd\ufffd bad \ufffd"
        assert lines[1] == "\ufffd( raw"
        assert lines[2] == "\\udcff lone"
        assert_serving(sb, s)


# ---------------------------------------------------------------------- CPU and wall-clock limits
CPU_HOGS = {
    "busy-loop": "while True: pass",
    "ignores-sigxcpu": "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True: pass",
    "ignores-sigxcpu-and-sigalrm": code("""
        import signal
        for sig in (signal.SIGXCPU, signal.SIGALRM):
            signal.signal(sig, signal.SIG_IGN)
        while True:
            pass
    """),
    "handles-sigxcpu": code("""
        import signal
        signal.signal(signal.SIGXCPU, lambda *args: None)
        x = 0
        while True:
            x += 1
    """),
}


@pytest.mark.slow
@pytest.mark.parametrize("program", CPU_HOGS.values(), ids=CPU_HOGS.keys())
def test_cpu_hogs_are_stopped_by_the_kernel_cpu_limit(cpu_sb: Sandbox, program: str) -> None:
    """CPU loops (some ignoring SIGXCPU) under a 1 s CPU budget and an 8 s wall limit: the
    kernel CPU limit ends them long before the wall-clock limit could."""
    with cpu_sb.session() as s:
        r = s.run(program)
        assert r.status == "crashed", r
        assert f"CPU-time budget of {cpu_sb.config.session_cpu_seconds} s" in (r.error or ""), r.error
        assert r.duration < cpu_sb.config.timeout
        assert_dead(s)
    assert_serving(cpu_sb)


@pytest.mark.slow
def test_cpu_budget_exhaustion_is_named_in_the_error(cpu_sb: Sandbox) -> None:
    """A session that runs out of its CPU budget is told so, not just 'killed'."""
    with cpu_sb.session() as s:
        r = s.run("while True: pass")
        assert r.status == "crashed"
        assert "CPU" in r.error, r.error
    assert_serving(cpu_sb)


@pytest.mark.slow
def test_forked_spinners_share_the_session_budget(cpu_sb: Sandbox) -> None:
    """Three forked children spinning (ignoring SIGXCPU) used to get the full budget each; the session's
    processes together are held to one budget, and the whole session is killed when it is spent."""
    program = code("""
        import os, signal, time
        for _ in range(3):
            if os.fork() == 0:
                signal.signal(signal.SIGXCPU, signal.SIG_IGN)
                while True:
                    pass
        time.sleep(7)
    """)
    budget = cpu_sb.config.session_cpu_seconds
    with cpu_sb.session() as s:
        r = s.run(program)
        assert r.status == "crashed", r
        assert f"CPU-time budget of {budget} s" in (r.error or ""), r.error
        used = float(r.error.split("(")[-1].split(" s)")[0])  # type: ignore[union-attr]
        assert budget <= used < budget + 1.0, r.error
        assert r.duration < cpu_sb.config.timeout
        assert_dead(s)
    assert_serving(cpu_sb)


@pytest.mark.slow
def test_background_work_between_runs_is_counted(cpu_sb: Sandbox) -> None:
    """Children left spinning when their run returned keep spending the session's budget (each alone stays
    under the per-process limit): the session is killed while idle, and the next run says why."""
    spin = "import os\nfor _ in range(2):\n    if os.fork() == 0:\n        while True:\n            pass\n"
    with cpu_sb.session() as s:
        started = s.run(spin + "print('returned')")
        assert started.stdout == "returned\n"
        time.sleep(2.5)
        r = s.run("print('next')")
        assert r.status == "crashed" and "CPU-time budget" in (r.error or ""), r
        assert_dead(s)
    assert_serving(cpu_sb)


INTERRUPTIBLE = {
    "busy-loop": "x = 41\nwhile True: pass",
    "sleep": "import time\nx = 41\ntime.sleep(60)",
    "event-wait": "import threading\nx = 41\nthreading.Event().wait()",
    "blocking-pipe-read": "import os\nx = 41\nr, w = os.pipe()\nos.read(r, 1)",
    "swallows-exception": code("""
        import time
        x = 41
        while True:
            try:
                time.sleep(10)
            except Exception:
                pass
    """),
}


@pytest.mark.parametrize("program", INTERRUPTIBLE.values(), ids=INTERRUPTIBLE.keys())
def test_timeouts_interrupt_and_keep_the_session(sb: Sandbox, program: str) -> None:
    """Loops, sleeps and blocking waits end as 'timeout'; variables set before survive."""
    with sb.session() as s:
        r = s.run(program, timeout=TIMEOUT)
        assert r.status == "timeout"
        assert r.error_type == "TimeoutError"
        assert r.session_alive
        assert TIMEOUT * 0.9 <= r.duration < TIMEOUT + KILL_GRACE
        assert s.run("print(x + 1)").stdout == "42\n"
        assert_serving(sb, s)


UNINTERRUPTIBLE = {
    "ignores-sigalrm": "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True: pass",
    "alarm-0": "import signal, time\nsignal.alarm(0)\ntime.sleep(60)",
    "setitimer-0": "import signal\nsignal.setitimer(signal.ITIMER_REAL, 0)\nwhile True: pass",
    "setitimer-later": "import signal\nsignal.setitimer(signal.ITIMER_REAL, 3600)\nwhile True: pass",
    "blocks-sigalrm": code("""
        import signal
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        while True:
            pass
    """),
    "own-sigalrm-handler": "import signal\nsignal.signal(signal.SIGALRM, lambda *a: None)\nwhile True: pass",
}


@pytest.mark.parametrize("program", UNINTERRUPTIBLE.values(), ids=UNINTERRUPTIBLE.keys())
def test_code_that_defeats_the_timer_is_killed(sb: Sandbox, program: str) -> None:
    """Code that ignores, blocks, cancels or swallows its SIGALRM is killed after the grace
    period, together with its session."""
    with sb.session() as s:
        r = s.run(program, timeout=TIMEOUT)
        assert r.status == "killed"
        assert "time limit" in r.error
        assert not r.session_alive
        assert r.duration < TIMEOUT + KILL_GRACE + 2.0
        assert_dead(s)
    assert_serving(sb)


def test_code_that_swallows_the_interrupt_is_still_stopped_in_time(sb: Sandbox) -> None:
    """A loop that catches BaseException around its work cannot outlive its limit: the
    interrupt is raised again at the next line of model code (status timeout, session kept),
    or, failing that, the host kills it."""
    program = code("""
        kept = 'yes'
        while True:
            try:
                while True:
                    pass
            except BaseException:
                pass
    """)
    with sb.session() as s:
        r = s.run(program, timeout=TIMEOUT)
        assert r.status in ("timeout", "killed"), r
        assert r.duration < TIMEOUT + KILL_GRACE + 2.0
        if r.status == "timeout":
            assert s.run("print(kept)").stdout == "yes\n"
        else:
            assert_dead(s)
    assert_serving(sb)


SWALLOWING_CONTEXTS = {
    "loop-in-del": code("""
        class Slow:
            def __del__(self):
                while True:
                    pass
        Slow()
        print('finished')
    """),
    "loop-in-at-fork-hook": code("""
        import os
        def spin():
            while True:
                pass
        os.register_at_fork(after_in_parent=spin)
        if os.fork() == 0:
            os._exit(0)
        print('finished')
    """),
    "loop-in-weakref-callback": code("""
        import weakref
        class Target:
            pass
        target = Target()
        def spin(_):
            while True:
                pass
        ref = weakref.ref(target, spin)
        del target
        print('finished')
    """),
}


@pytest.mark.parametrize("program", SWALLOWING_CONTEXTS.values(), ids=SWALLOWING_CONTEXTS.keys())
def test_time_limit_survives_contexts_that_swallow_exceptions(sb: Sandbox, program: str) -> None:
    """Code that overruns inside __del__, an at-fork hook or a weakref callback, where Python
    discards exceptions: the run must not be reported 'ok' nor continue past its limit."""
    with sb.session() as s:
        r = s.run(program, timeout=TIMEOUT)
        assert r.status in ("timeout", "killed"), (r.status, r.stdout, r.stderr[-300:])
        assert "finished" not in r.stdout
    assert_serving(sb)


def test_timeout_result_holds_only_the_programs_own_output(sb: Sandbox) -> None:
    """An interrupted run reports what the program printed and nothing from sandbox internals."""
    with sb.session() as s:
        r = s.run("print('before')\nwhile True: pass", timeout=TIMEOUT)
        assert r.status == "timeout"
        assert r.stdout == "before\n"
        assert "codevision" not in r.stderr
        assert r.stderr == "", r.stderr
        assert_serving(sb, s)


def test_timeout_does_not_write_into_files_the_program_opened(sb: Sandbox) -> None:
    """Files opened by model code stay untouched when its run is interrupted."""
    with sb.session() as s:
        r = s.run(
            "import time\nfiles = [open(f'/tmp/f{i}', 'wb', buffering=0) for i in range(12)]\ntime.sleep(60)",
            timeout=TIMEOUT,
        )
        assert r.status == "timeout"
        sizes = s.run(OWN_TMP + "print({f: os.path.getsize('/tmp/' + f) for f in own_tmp})")
        assert "f0" in sizes.stdout
        assert set(eval(sizes.stdout).values()) == {0}, sizes.stdout
        assert_serving(sb, s)


STDIN_READERS = {
    "sys-stdin-read": ("import sys\nprint(repr(sys.stdin.read()))", "''\n"),
    "os-read-fd0": ("import os\nprint(repr(os.read(0, 1)))", "b''\n"),
    "dev-stdin": ("print(repr(open('/dev/stdin').read()))", "''\n"),
    "input": ("try:\n    input()\nexcept EOFError:\n    print('eof')", "eof\n"),
}


@pytest.mark.parametrize("program,expected", STDIN_READERS.values(), ids=STDIN_READERS.keys())
def test_reading_stdin_returns_eof_instead_of_blocking(sb: Sandbox, program: str, expected: str) -> None:
    """Blocking reads of stdin see end-of-file at once."""
    with sb.session() as s:
        r = s.run(program, timeout=TIMEOUT)
        assert (r.status, r.stdout) == ("ok", expected)
        assert r.duration < TIMEOUT / 2
        assert_serving(sb, s)


# ---------------------------------------------------------------------- crashes and exits
CRASHERS = {
    "ctypes-null-read": ("import ctypes\nctypes.string_at(0)", "SIGSEGV"),
    "ctypes-null-write": ("import ctypes\nctypes.memset(0, 1, 8)", "SIGSEGV"),
    "c-stack-overflow": (
        code("""
        import sys
        sys.setrecursionlimit(10**6)
        def f(n):
            return list(map(f, [n + 1]))
        f(0)
    """),
        "SIGSEGV",
    ),
    "os-abort": ("import os\nos.abort()", "died from SIG"),
    "os-exit-0": ("import os\nprint('pretend success')\nos._exit(0)", "exited with code 0"),
    "exec-shell": ("import os\nos.execv('/bin/sh', ['sh', '-c', 'exit 0'])", "the session process"),
}


def test_closing_the_output_descriptors_does_not_lose_later_output(sb: Sandbox) -> None:
    """Code that closes or redirects fds 1 and 2 only affects its own cell: capture is re-attached."""
    with sb.session() as s:
        r = s.run("import os\nos.close(1)\nos.close(2)\nprint('lost')")
        assert r.status == "error" and r.error_type == "OSError"
        assert s.run("import os\nprint('back')\nos.write(2, b'err')").stdout == "back\n"
        assert_serving(sb, s)


@pytest.mark.parametrize("program,reason", CRASHERS.values(), ids=CRASHERS.keys())
def test_crashes_and_hard_exits_are_reported_as_crashed(sb: Sandbox, program: str, reason: str) -> None:
    """Segfaults, C-stack overflow, abort, os._exit(0) and exec: status 'crashed' (never 'ok'),
    the cause in the error, and the dead session refuses further runs."""
    with sb.session() as s:
        r = s.run(program)
        assert r.status == "crashed"
        assert not r.ok
        assert reason in r.error, r.error
        assert not r.session_alive
        assert_dead(s)
    assert_serving(sb)


RECOVERABLE = {
    "python-recursion": ("def f(n):\n    return f(n + 1)\nf(0)", "RecursionError"),
    "sys-exit-0": ("import sys\nsys.exit(0)", "SystemExit"),
    "raise-keyboard-interrupt": ("raise KeyboardInterrupt", "KeyboardInterrupt"),
    "null-byte-in-source": ("print(1)\x00", "SyntaxError"),
    "display-fake-figure": ("class F:\n    pass\nF.__module__ = 'matplotlib.figure'\ndisplay(F())", "AttributeError"),
}


@pytest.mark.parametrize("program,error_type", RECOVERABLE.values(), ids=RECOVERABLE.keys())
def test_recoverable_failures_keep_the_session(sb: Sandbox, program: str, error_type: str) -> None:
    """Deep recursion, sys.exit, KeyboardInterrupt and broken source are errors, not deaths."""
    with sb.session() as s:
        r = s.run(program)
        assert r.status == "error"
        assert r.error_type == error_type, r.error
        assert r.session_alive
        assert_serving(sb, s)


# ---------------------------------------------------------------------- signals against the host
def kill_programs(fork_server: int) -> dict[str, tuple[str, str | None]]:
    test_pid = os.getpid()
    return {
        "kill-ppid-sigkill": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint('alive')", None),
        "kill-ppid-sigstop": ("import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)\nprint('alive')", None),
        "kill-minus-one": ("import os, signal\nos.kill(-1, signal.SIGKILL)", "ProcessLookupError"),
        "killpg-own-group": ("import os, signal\nos.killpg(os.getpgid(0), signal.SIGKILL)", "ProcessLookupError"),
        "kill-fork-server-pid": (f"import os, signal\nos.kill({fork_server}, signal.SIGKILL)", "ProcessLookupError"),
        "stop-fork-server-pid": (f"import os, signal\nos.kill({fork_server}, signal.SIGSTOP)", "ProcessLookupError"),
        "kill-test-process-pid": (f"import os, signal\nos.kill({test_pid}, signal.SIGKILL)", "ProcessLookupError"),
    }


KILL_IDS = [
    "kill-ppid-sigkill",
    "kill-ppid-sigstop",
    "kill-minus-one",
    "killpg-own-group",
    "kill-fork-server-pid",
    "stop-fork-server-pid",
    "kill-test-process-pid",
]


@pytest.mark.parametrize("name", KILL_IDS)
def test_signals_cannot_reach_the_fork_server_or_host(sb: Sandbox, name: str) -> None:
    """Killing or stopping the parent, everything (-1), the process group or host pids by
    number: the fork server keeps running (not stopped) and the session survives."""
    fork_server = sb.status()["fork_server_pid"]
    program, error_type = kill_programs(fork_server)[name]
    with sb.session() as s:
        r = s.run(program)
        assert r.error_type == error_type, r.error
        if error_type is None:
            assert r.stdout == "alive\n"
        assert os.path.exists(f"/proc/{fork_server}")
        assert process_state(fork_server) not in ("T", "t", "Z")
        assert sb.status()["fork_server_pid"] == fork_server
        assert_serving(sb, s)


def test_ptrace_and_proc_memory_of_host_processes_are_unreachable(sb: Sandbox) -> None:
    """PTRACE_ATTACH to the fork server, the test process, the session itself and (from a
    child) its parent; /proc/<pid>/mem and environ of those; process_vm_readv of host pids."""
    fork_server = sb.status()["fork_server_pid"]
    program = code(
        """
        import ctypes, json, os
        libc = ctypes.CDLL(None, use_errno=True)
        libc.ptrace.restype = ctypes.c_long
        out = {}
        def attach(pid):
            return 0 if libc.ptrace(16, pid, 0, 0) == 0 else ctypes.get_errno()
        for name, pid in (('fork_server', @FS@), ('test', @TEST@), ('ppid', os.getppid())):
            out['ptrace_' + name] = attach(pid)
            local = (ctypes.c_char * 8)()
            iov_l = (ctypes.c_void_p * 2)(ctypes.cast(local, ctypes.c_void_p), 8)
            iov_r = (ctypes.c_void_p * 2)(0x400000, 8)
            n = libc.process_vm_readv(pid, iov_l, 1, iov_r, 1, 0)
            out['vm_readv_' + name] = 0 if n >= 0 else ctypes.get_errno()
        child = os.fork()
        if child == 0:
            os._exit(attach(1))
        out['ptrace_parent_from_child'] = os.waitpid(child, 0)[1] >> 8
        for path in ('/proc/@FS@/mem', '/proc/@TEST@/environ', '/proc/1/mem', '/proc/1/environ',
                     '/proc/0/mem'):
            try:
                with open(path, 'rb') as fh:
                    fh.read(16)
                out[path] = 0
            except OSError as exc:
                out[path] = exc.errno
        print(json.dumps(out))
    """,
        FS=fork_server,
        TEST=os.getpid(),
    )
    with sb.session() as s:
        out = last_json(s.run(program))
        for name in ("fork_server", "test", "ppid"):
            assert out[f"ptrace_{name}"] in DENIED, out
            assert out[f"vm_readv_{name}"] in DENIED, out
        assert out["ptrace_parent_from_child"] in DENIED
        assert out[f"/proc/{fork_server}/mem"] == errno.ENOENT
        assert out[f"/proc/{os.getpid()}/environ"] == errno.ENOENT
        assert out["/proc/1/mem"] == errno.EACCES
        assert out["/proc/1/environ"] == errno.EACCES
        assert out["/proc/0/mem"] == errno.ENOENT
        assert_serving(sb, s)


# ---------------------------------------------------------------------- privilege escalation
ESCALATIONS = {
    "setuid-0": "import os\nos.setuid(0)",
    "setgid-0": "import os\nos.setgid(0)",
    "setgroups-0": "import os\nos.setgroups([0])",
    "chroot": "import os\nos.chroot('/tmp')",
    "unshare-user": "raise_errno(libc.unshare(0x10000000))",
    "unshare-mount-net": "raise_errno(libc.unshare(0x00020000 | 0x40000000))",
    "setns-own-mount-ns": "import os\nraise_errno(libc.setns(os.open('/proc/self/ns/mnt', os.O_RDONLY), 0))",
    "mount-tmpfs": "raise_errno(libc.mount(b'none', b'/usr', b'tmpfs', 0, None))",
    "remount-root-rw": "raise_errno(libc.mount(None, b'/', None, 32 | 4096, None))",
    "mount-sysfs": "import os\nraise_errno(libc.mount(b'sysfs', b'/tmp', b'sysfs', 0, None))",
    "umount-proc": "raise_errno(libc.umount2(b'/proc', 2))",
    "sethostname": "raise_errno(libc.sethostname(b'pwned', 5))",
    "capset-all": code("""
        class Header(ctypes.Structure):
            _fields_ = [('version', ctypes.c_uint32), ('pid', ctypes.c_int)]
        data = (ctypes.c_uint32 * 6)(*([0xFFFFFFFF] * 6))
        raise_errno(libc.capset(ctypes.byref(Header(0x20080522, 0)), data))
    """),
    "mknod-mem": "import os, stat\nos.mknod('/tmp/mem', stat.S_IFCHR | 0o600, os.makedev(1, 1))",
    "reboot": "raise_errno(libc.reboot(0x1234567))",
}
ESCALATION_PRELUDE = code("""
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    def raise_errno(result):
        if result != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
""")


@pytest.mark.parametrize("program", ESCALATIONS.values(), ids=ESCALATIONS.keys())
def test_privilege_escalation_syscalls_are_refused(sb: Sandbox, program: str) -> None:
    """setuid/setgid/setgroups, chroot, unshare, setns, mount, umount, sethostname, capset,
    mknod and reboot: each fails with EPERM (no privilege) or ENOSYS (the seccomp filter)."""
    with sb.session() as s:
        r = s.run(ESCALATION_PRELUDE + program)
        assert r.status == "error"
        assert r.error_type in ("PermissionError", "OSError"), r.error
        assert "[Errno 1]" in r.error or "[Errno 38]" in r.error, r.error
        still = s.run(OWN_TMP + "import socket; print(os.getuid() != 0, own_tmp, socket.gethostname() != 'pwned')")
        assert still.stdout == "True [] True\n"
        assert_serving(sb, s)


# ---------------------------------------------------------------------- secrets
@pytest.fixture
def secret_sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    monkeypatch.setenv(SECRET_ENV, SECRET_VALUE)
    with Sandbox(workers=1, timeout=10.0, kill_grace=KILL_GRACE, memory_mb=MEMORY_MB) as sandbox:
        yield sandbox


SECRET_SCAN = code("""
    import ctypes, glob, json, os
    TABLE = bytes((i + 1) % 256 for i in range(256))
    needles = {name: bytes.fromhex(h) for name, h in @NEEDLES@.items()}
    hits = {name: [] for name in needles}
    def check(where, data):
        shifted = data.translate(TABLE)
        for name, needle in needles.items():
            if needle in shifted:
                hits[name].append(where)
    check('os.environ', repr(dict(os.environ)).encode())
    check('image.info', repr(image.info).encode())
    paths = glob.glob('/proc/*/environ') + glob.glob('/proc/*/cmdline') + glob.glob('/proc/*/task/*/environ')
    for path in paths:
        try:
            with open(path, 'rb') as fh:
                check(path, fh.read())
        except OSError:
            pass
    scanned = 0
    with open('/proc/self/maps') as fh:
        maps = fh.read().splitlines()
    for line in maps:
        fields = line.split()
        where = fields[5] if len(fields) > 5 else 'anonymous'
        if not fields[1].startswith('r') or where not in ('anonymous', '[heap]', '[stack]'):
            continue
        lo, hi = (int(x, 16) for x in fields[0].split('-'))
        for start in range(lo, hi, 1 << 24):
            size = min(1 << 24, hi - start)
            check('memory ' + where, ctypes.string_at(start, size))
            scanned += size
    print(json.dumps({'hits': {k: sorted(set(v)) for k, v in hits.items()}, 'scanned': scanned,
                      'env': sorted(os.environ)}))
""")


def test_environment_secrets_and_labels_are_not_reachable(secret_sandbox: Sandbox) -> None:
    """A secret in the caller's environment and a label in the caller's memory (and in the
    input image's metadata) appear nowhere the session can look: os.environ, /proc/*/environ,
    /proc/*/cmdline or any anonymous, heap or stack memory."""
    assert os.environ[SECRET_ENV] == SECRET_VALUE
    needles = {
        "secret": shifted_hex(SECRET_VALUE),
        "secret_name": shifted_hex(SECRET_ENV),
        "label": shifted_hex(GROUND_TRUTH),
        "control_env": shifted_hex("OMP_NUM_THREADS=1"),
    }
    img = gradient_image()
    img.info["label"] = GROUND_TRUTH
    png = io.BytesIO()
    meta = PngImagePlugin.PngInfo()
    meta.add_text("label", GROUND_TRUTH)
    img.save(png, "PNG", pnginfo=meta)
    labelled = Image.open(io.BytesIO(png.getvalue()))
    with secret_sandbox.session(images=[labelled]) as s:
        out = last_json(s.run(code(SECRET_SCAN, NEEDLES=needles)))
        assert out["hits"]["secret"] == []
        assert out["hits"]["secret_name"] == []
        assert out["hits"]["label"] == []
        assert SECRET_ENV not in out["env"]
        # The scan is sensitive: a string known to be in the session's environment is found.
        assert out["hits"]["control_env"], out
        assert out["scanned"] > 10 << 20
        assert_serving(secret_sandbox, s)


def host_file_candidates() -> list[str]:
    home = Path.home()
    return [
        "/etc/shadow",
        "/etc/passwd",
        "/etc/hostname",
        "/etc/hosts",
        "/etc/resolv.conf",
        "/root/.ssh",
        "/root/.bash_history",
        str(home / ".cache" / "codevision"),
        "/home",
        "/var/log",
        "/run",
        "/var/run/docker.sock",
        "/proc/kcore",
        "/proc/kmsg",
        str(Path(__file__).resolve()),
        str(REPO_ROOT / "tests" / "conftest.py"),
        str(REPO_ROOT / "pyproject.toml"),
        str(REPO_ROOT / "README.md"),
        str(REPO_ROOT / ".git"),
    ]


def test_host_files_are_absent_or_unreadable(sb: Sandbox) -> None:
    """/etc/shadow and /etc/passwd, the home directory, the repository (including this file,
    which holds the label) and kernel memory files cannot be read."""
    program = code(
        """
        import json, os
        out = {}
        for path in @PATHS@:
            try:
                if os.path.isdir(path):
                    out[path] = 'listed: ' + ','.join(os.listdir(path))
                else:
                    with open(path, 'rb') as fh:
                        out[path] = 'read: ' + fh.read(64).decode('latin-1')
            except OSError as exc:
                out[path] = exc.errno
        print(json.dumps(out))
    """,
        PATHS=host_file_candidates(),
    )
    with sb.session() as s:
        out = last_json(s.run(program))
        readable = {path: how for path, how in out.items() if how not in (errno.ENOENT, errno.EACCES)}
        assert readable == {}
        assert_serving(sb, s)


def test_sys_and_devices_are_not_exposed(sb: Sandbox) -> None:
    """/sys is absent and /dev holds only harmless devices (null, zero, full, random, urandom)."""
    program = code("""
        import json, os
        out = {'dev': sorted(os.listdir('/dev')), 'sys': os.path.exists('/sys')}
        for path in ('/dev/mem', '/dev/kmem', '/dev/port', '/dev/kmsg', '/dev/vda', '/dev/sda',
                     '/dev/nvme0n1', '/dev/tty', '/dev/shm', '/dev/net/tun', '/dev/fuse',
                     '/sys/kernel/notes', '/sys/class/net'):
            try:
                open(path, 'rb').close()
                out[path] = 'opened'
            except OSError as exc:
                out[path] = exc.errno
        with open('/dev/urandom', 'rb') as fh:
            out['urandom'] = len(fh.read(16))
        print(json.dumps(out))
    """)
    with sb.session() as s:
        out = last_json(s.run(program))
        allowed = {"null", "zero", "full", "random", "urandom", "fd", "stdin", "stdout", "stderr"}
        assert set(out.pop("dev")) <= allowed
        assert out.pop("sys") is False
        assert out.pop("urandom") == 16
        assert set(out.values()) == {errno.ENOENT}, out
        assert_serving(sb, s)


# ---------------------------------------------------------------------- writing outside the scratch dir
@pytest.fixture(scope="module")
def canary() -> Iterator[Path]:
    """A world-writable file inside a directory the sandbox binds read-only."""
    path = Path(sys.prefix) / f"codevision-canary-{TOKEN}.txt"
    try:
        path.write_text("original\n")
        path.chmod(0o666)
    except OSError:
        pytest.skip("the Python prefix is not writable on this host")
    yield path
    path.unlink(missing_ok=True)


def write_targets(canary: Path) -> dict[str, str]:
    return {
        "etc": f"/etc/codevision-pwned-{TOKEN}",
        "usr": f"/usr/codevision-pwned-{TOKEN}",
        "root-dir": f"/codevision-pwned-{TOKEN}",
        "cwd-relative-escape": f"../codevision-pwned-{TOKEN}",
        "tmp-dotdot-escape": f"/tmp/../../codevision-pwned-{TOKEN}",
        "repo": str(REPO_ROOT / f"codevision-pwned-{TOKEN}"),
        "repo-src": str(REPO_ROOT / "src" / f"codevision-pwned-{TOKEN}"),
        "home": f"/root/codevision-pwned-{TOKEN}",
        "dev": f"/dev/codevision-pwned-{TOKEN}",
        "proc": f"/proc/codevision-pwned-{TOKEN}",
        "existing-canary": str(canary),
    }


WRITE_IDS = [
    "etc",
    "usr",
    "root-dir",
    "cwd-relative-escape",
    "tmp-dotdot-escape",
    "repo",
    "repo-src",
    "home",
    "dev",
    "proc",
    "existing-canary",
]


@pytest.mark.parametrize("name", WRITE_IDS)
def test_writes_outside_scratch_fail(sb: Sandbox, canary: Path, name: str) -> None:
    """Creating or appending files in /etc, /usr, /, the repository, home, /dev, /proc, via
    cwd-relative and ``..`` paths, and into a world-writable host file: the write fails and
    nothing changes on the host."""
    target = write_targets(canary)[name]
    program = code(
        """
        try:
            with open(@TARGET@, 'a') as fh:
                fh.write('PWNED')
            print('written')
        except OSError as exc:
            print(exc.errno)
    """,
        TARGET=target,
    )
    with sb.session() as s:
        r = s.run(program)
        assert r.status == "ok", r.error
        assert r.stdout.strip() in {str(errno.EROFS), str(errno.EACCES), str(errno.ENOENT)}, r.stdout
    host_path = Path("/tmp", target).resolve() if not target.startswith("/") else Path(target)
    if name == "existing-canary":
        assert canary.read_text() == "original\n"
    else:
        assert not host_path.exists()
        assert not Path("/", Path(target).name).exists()
    assert_serving(sb)


def test_symlinks_hardlinks_and_renames_cannot_reach_host_files(sb: Sandbox, canary: Path) -> None:
    """Symlinks in /tmp to a world-writable host file and to a hidden repository file, then
    writes through them; hard links and renames of those files: the host files are unchanged."""
    hidden = REPO_ROOT / "pyproject.toml"
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (canary, hidden)}
    program = code(
        """
        import json, os
        out = {}
        with open(@CANARY@) as fh:
            out['canary:visible'] = fh.read()
        for name, target in (('canary', @CANARY@), ('hidden', @HIDDEN@)):
            link = '/tmp/link-' + name
            os.symlink(target, link)
            for mode in ('a', 'w', 'r+'):
                try:
                    with open(link, mode) as fh:
                        fh.write('PWNED')
                    out[f'{name}:{mode}'] = 'written'
                except OSError as exc:
                    out[f'{name}:{mode}'] = exc.errno
            for op, call in (('link', lambda: os.link(target, '/tmp/hard-' + name)),
                             ('rename', lambda: os.rename(target, '/tmp/moved-' + name)),
                             ('unlink', lambda: os.unlink(target))):
                try:
                    call()
                    out[f'{name}:{op}'] = 'done'
                except OSError as exc:
                    out[f'{name}:{op}'] = exc.errno
        print(json.dumps(out))
    """,
        CANARY=str(canary),
        HIDDEN=str(hidden),
    )
    with sb.session() as s:
        out = last_json(s.run(program))
        assert out.pop("canary:visible") == "original\n"
        assert "written" not in out.values() and "done" not in out.values(), out
        assert_serving(sb, s)
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (canary, hidden)}
    assert after == before


SHELL_ESCAPES = {
    "os-system": "import os\nrc = os.system('id -u; touch @TARGET@')\nprint('rc', rc)",
    "subprocess-run": code("""
        import subprocess
        p = subprocess.run(['sh', '-c', 'id -u; touch @TARGET@'], capture_output=True, text=True)
        print(p.stdout, end='')
        print('rc', p.returncode)
    """),
    "image-os-system": "rc = Image.os.system('id -u; touch @TARGET@')\nprint('rc', rc)",
    "popen-bash-redirect": code("""
        import os
        print(os.popen('id -u; echo PWNED > @TARGET@; echo $?').read(), end='')
        print('rc', 0)
    """),
}


@pytest.mark.parametrize("program", SHELL_ESCAPES.values(), ids=SHELL_ESCAPES.keys())
def test_shell_escapes_run_unprivileged_and_cannot_write_outside(sb: Sandbox, program: str) -> None:
    """os.system, subprocess, Image.os.system and os.popen: the shell runs as the session's
    non-root uid and cannot create a file outside /tmp."""
    target = f"/etc/codevision-shell-{TOKEN}"
    with sb.session() as s:
        uid = s.run("import os; print(os.getuid())").stdout.strip()
        r = s.run(program.replace("@TARGET@", target))
        assert r.status == "ok", r.error
        lines = r.stdout.split()
        assert lines[0] == uid != "0"
        assert "PWNED" not in r.stdout
        assert s.run(f"import os; print(os.path.exists({target!r}))").stdout == "False\n"
        assert_serving(sb, s)
    assert not Path(target).exists()


# ---------------------------------------------------------------------- network
def test_tcp_connect_to_a_host_listener_fails(sb: Sandbox, tcp_listener: socket.socket) -> None:
    """A TCP connect to a listener the test opened on 127.0.0.1 (and to a public address)
    fails, and the listener never sees a connection."""
    port = tcp_listener.getsockname()[1]
    program = code(
        """
        import json, socket
        out = {}
        for host, port in (('127.0.0.1', @PORT@), ('localhost', @PORT@), ('8.8.8.8', 53)):
            try:
                s = socket.socket()
                s.settimeout(1)
                s.connect((host, port))
                out[host] = 'connected'
            except OSError as exc:
                out[host] = exc.errno if exc.errno is not None else type(exc).__name__
        print(json.dumps(out))
    """,
        PORT=port,
    )
    with sb.session() as s:
        out = last_json(s.run(program))
        assert "connected" not in out.values()
        # seccomp refuses IP sockets outright; without it, the empty network namespace has no route
        assert out["127.0.0.1"] in (errno.EAFNOSUPPORT, errno.ENETUNREACH, errno.ECONNREFUSED)
        assert out["8.8.8.8"] in (errno.EAFNOSUPPORT, errno.ENETUNREACH)
        assert_serving(sb, s)
    assert accepted_nothing(tcp_listener)


def test_udp_to_a_host_socket_is_not_delivered(sb: Sandbox) -> None:
    """A UDP datagram to a socket the test opened on 127.0.0.1 never arrives."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(0.3)
    port = receiver.getsockname()[1]
    program = code(
        """
        import socket
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.sendto(b'exfiltrated', ('127.0.0.1', @PORT@))
            print('sent')
        except OSError as exc:
            print(exc.errno)
    """,
        PORT=port,
    )
    try:
        with sb.session() as s:
            r = s.run(program)
            assert r.status == "ok"
            assert r.stdout.strip() in ("sent", str(errno.ENETUNREACH), str(errno.EAFNOSUPPORT))
            assert_serving(sb, s)
        with pytest.raises(TimeoutError):
            receiver.recvfrom(64)
    finally:
        receiver.close()


NETWORK_PROBES = {
    "dns": ("import socket\nsocket.getaddrinfo('example.com', 80)", {"gaierror"}),
    # seccomp answers EAFNOSUPPORT (an OSError) for every family but AF_UNIX; without it, no privilege.
    "raw-icmp": (
        "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)",
        {"OSError", "PermissionError"},
    ),
    "packet-socket": (
        "import socket\nsocket.socket(socket.AF_PACKET, socket.SOCK_RAW)",
        {"OSError", "PermissionError"},
    ),
    "only-loopback": (
        "import socket\nnames = [n for _, n in socket.if_nameindex()]\n"
        "assert names == ['lo'], names\nraise ConnectionError('no network')",
        {"OSError", "ConnectionError"},
    ),
}


@pytest.mark.parametrize("program,error_types", NETWORK_PROBES.values(), ids=NETWORK_PROBES.keys())
def test_network_primitives_are_unavailable(sb: Sandbox, program: str, error_types: set[str]) -> None:
    """DNS resolution, raw and packet sockets fail; the only interface is an isolated loopback."""
    with sb.session() as s:
        r = s.run(program)
        assert r.status == "error"
        assert r.error_type in error_types, r.error
        assert_serving(sb, s)


# Every address family number up to 63 (Linux knows 0 to 45, AF_MAX = 46; the rest are there for families a
# newer kernel adds), AF_UNIX = 1 excepted: the one sessions keep. Named where the name helps a reader.
_NAMED = {2: "inet", 10: "inet6", 16: "netlink", 17: "packet", 31: "bluetooth", 38: "alg", 40: "vsock", 44: "xdp"}
FAMILIES = {_NAMED.get(number, f"family {number}"): number for number in range(64) if number != 1}


def test_only_unix_sockets_can_be_made(sb: Sandbox) -> None:
    """socket() and socketpair() of any family but AF_UNIX are refused, AF_VSOCK (outside the network
    namespace: the host's and the hypervisor's port space) included."""
    if not sb.status()["isolation"]["available"].get("seccomp"):
        pytest.skip("the seccomp layer is not available on this host")
    program = code(
        """
        import json, socket
        out = {}
        for name, family in @FAMILIES@.items():
            for kind in ('socket', 'socketpair'):
                try:
                    getattr(socket, kind)(family, socket.SOCK_STREAM)
                    out[f'{kind} {name}'] = 'made'
                except OSError as exc:
                    out[f'{kind} {name}'] = exc.errno
        a, b = socket.socketpair(socket.AF_UNIX)
        a.send(b'x')
        out['unix'] = b.recv(1).decode()
        print(json.dumps(out))
    """,
        FAMILIES=FAMILIES,
    )
    with sb.session() as s:
        out = last_json(s.run(program))
        assert out.pop("unix") == "x"
        assert out == dict.fromkeys(out, errno.EAFNOSUPPORT)
        assert len(out) == 2 * len(FAMILIES)
        assert_serving(sb, s)


def test_abstract_unix_socket_of_the_host_is_unreachable(sb: Sandbox) -> None:
    """An abstract unix socket listening in the test process cannot be reached."""
    name = f"\0codevision-host-{TOKEN}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(name)
    server.listen(1)
    server.setblocking(False)
    try:
        program = code(
            """
            import socket
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(@NAME@)
                print('connected')
            except OSError as exc:
                print(exc.errno)
        """,
            NAME=name,
        )
        with sb.session() as s:
            r = s.run(program)
            assert r.stdout.strip() == str(errno.ECONNREFUSED)
            assert_serving(sb, s)
        assert accepted_nothing(server)
    finally:
        server.close()


# ---------------------------------------------------------------------- other sessions
def test_concurrent_sessions_cannot_see_or_signal_each_other(sb: Sandbox) -> None:
    """Two live sessions: one leaves a file, a child process and an abstract socket; the other
    sees none of them, cannot signal them (by its own or host pid numbers) and has another uid."""
    setup = code("""
        import json, os, socket, time
        open('/tmp/peer-marker', 'w').write('here')
        server = socket.socket(socket.AF_UNIX)
        server.bind('\\0codevision-peer')
        server.listen(1)
        child = os.fork()
        if child == 0:
            time.sleep(60)
            os._exit(0)
        print(json.dumps({'child': child, 'uid': os.getuid()}))
    """)
    with sb.session() as a, sb.session() as b:
        info = last_json(a.run(setup))
        probe = OWN_TMP + code(
            """
            import json, os, signal, socket
            out = {'tmp': own_tmp, 'uid': os.getuid(),
                   'pids': sorted(int(p) for p in os.listdir('/proc') if p.isdigit())}
            out['alive'] = []
            for pid in range(2, 200):
                try:
                    os.kill(pid, 0)
                    out['alive'].append(pid)
                except OSError:
                    pass
            for name, pid in (('peer_child', @CHILD@), ('peer_host_pid', @PEER@)):
                try:
                    os.kill(pid, signal.SIGKILL)
                    out[name] = 'killed'
                except OSError as exc:
                    out[name] = exc.errno
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect('\\0codevision-peer')
                out['connect'] = 'connected'
            except OSError as exc:
                out['connect'] = exc.errno
            print(json.dumps(out))
        """,
            CHILD=info["child"],
            PEER=a.pid,
        )
        out = last_json(b.run(probe))
        assert out["tmp"] == []
        assert out["pids"] == [1]
        assert out["alive"] == []
        assert out["uid"] != info["uid"]
        assert out["peer_child"] == errno.ESRCH
        assert out["peer_host_pid"] == errno.ESRCH
        assert out["connect"] == errno.ECONNREFUSED
        check = a.run(f"import os\nprint(os.waitpid({info['child']}, os.WNOHANG), open('/tmp/peer-marker').read())")
        assert check.stdout == "(0, 0) here\n"
        assert_serving(sb, a)
        assert_serving(sb, b)


# A read-only library file every session sees: the same inode for all of them.
SHARED_FILE = "import os\nshared = os.__file__\n"
# (the sender's signal, held for a while; the receiver's probe, which prints 'seen' only if it got the bit)
INODE_CHANNELS = {
    "flock": (
        "import fcntl, time\nf = open(shared)\ntry:\n    fcntl.flock(f, fcntl.LOCK_EX)\nexcept OSError:\n    pass\n"
        "time.sleep(1.5)",
        "import errno, fcntl\nf = open(shared)\ntry:\n    fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)\n"
        "    print('free')\nexcept OSError as exc:\n    print('seen' if exc.errno == errno.EWOULDBLOCK else exc.errno)",
    ),
    "record-lock": (
        "import fcntl, time\nf = open(shared)\ntry:\n    fcntl.lockf(f, fcntl.LOCK_SH)\nexcept OSError:\n    pass\n"
        "time.sleep(1.5)",
        "import fcntl, struct\nf = open(shared)\nquery = struct.pack('hhqqi4x', fcntl.F_WRLCK, 0, 0, 0, 0)\n"
        "try:\n    answer = fcntl.fcntl(f, fcntl.F_GETLK, query)\n"
        "    print('seen' if struct.unpack('hhqqi4x', answer)[0] != fcntl.F_UNLCK else 'free')\n"
        "except OSError as exc:\n    print(exc.errno)",
    ),
    "ofd-lock": (
        "import fcntl, struct, time\nf = open(shared)\n"
        "try:\n    fcntl.fcntl(f, fcntl.F_OFD_SETLK, struct.pack('hhqqi4x', fcntl.F_RDLCK, 0, 0, 0, 0))\n"
        "except OSError:\n    pass\ntime.sleep(1.5)",
        "import fcntl, struct\nf = open(shared)\nquery = struct.pack('hhqqi4x', fcntl.F_WRLCK, 0, 0, 0, 0)\n"
        "try:\n    answer = fcntl.fcntl(f, fcntl.F_OFD_GETLK, query)\n"
        "    print('seen' if struct.unpack('hhqqi4x', answer)[0] != fcntl.F_UNLCK else 'free')\n"
        "except OSError as exc:\n    print(exc.errno)",
    ),
    "inotify": (
        "import time\nfor _ in range(30):\n    open(shared).read(1)\n    time.sleep(0.05)",
        "import ctypes, os, select\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "fd = libc.inotify_init1(os.O_NONBLOCK)\n"
        "if fd < 0:\n    print(ctypes.get_errno())\n"
        "else:\n    libc.inotify_add_watch(fd, shared.encode(), 0x20 | 0x1)\n"
        "    ready, _, _ = select.select([fd], [], [], 1.0)\n    print('seen' if ready else 'free')",
    ),
    "fanotify": (
        "import time\nfor _ in range(30):\n    open(shared).read(1)\n    time.sleep(0.05)",
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "fd = libc.fanotify_init(0x200, 0)\nprint(ctypes.get_errno() if fd < 0 else 'seen')",
    ),
    "dnotify": (
        "import time\nfor _ in range(30):\n    open(shared).read(1)\n    time.sleep(0.05)",
        "import fcntl, os\nd = os.open(os.path.dirname(shared), os.O_RDONLY)\n"
        "try:\n    fcntl.fcntl(d, fcntl.F_NOTIFY, fcntl.DN_ACCESS)\n    print('seen')\n"
        "except OSError as exc:\n    print(exc.errno)",
    ),
    "lease": (
        "import time\ntime.sleep(1.0)",
        "import fcntl\nf = open(shared)\ntry:\n    fcntl.fcntl(f, fcntl.F_SETLEASE, fcntl.F_RDLCK)\n    print('seen')\n"
        "except OSError as exc:\n    print(exc.errno)",
    ),
}


@pytest.mark.parametrize(("sender", "receiver"), INODE_CHANNELS.values(), ids=INODE_CHANNELS.keys())
def test_concurrent_sessions_cannot_signal_through_shared_files(sb: Sandbox, sender: str, receiver: str) -> None:
    """Locks, leases and change notifications on a file both sessions see carry no bit between them:
    with the seccomp layer, each primitive is refused outright."""
    if not sb.status()["isolation"]["available"].get("seccomp"):
        pytest.skip("the seccomp layer is not available on this host")
    with sb.session() as a, sb.session() as b, ThreadPoolExecutor(1) as pool:
        sending = pool.submit(a.run, SHARED_FILE + sender)
        time.sleep(0.3)
        received = b.run(SHARED_FILE + receiver)
        assert sending.result(timeout=30).status == "ok"
    assert received.status == "ok", received.error
    assert received.stdout.strip() in (str(errno.ENOSYS), str(errno.ENOLCK)), received.stdout
    assert_serving(sb)


ALIVE_PIDS = code("""
    import os
    alive = []
    for pid in range(2, 200):
        try:
            os.kill(pid, 0)
            alive.append(pid)
        except OSError:
            pass
    print(alive)
""")
LEFTOVERS = {
    "tmp-file": ("open('/tmp/leftover', 'w').write('x')", OWN_TMP + "print(own_tmp)", "[]\n"),
    "background-process": (
        "import os, time\nif os.fork() == 0:\n    time.sleep(60)\n    os._exit(0)",
        ALIVE_PIDS,
        "[]\n",
    ),
    "variable": ("leftover = 42", "print('leftover' in globals())", "False\n"),
    "numpy-array-none": ("np.array = None", "print(np.array([1, 2]).sum())", "3\n"),
    "pil-rotate-none": (
        "Image.Image.rotate = None",
        "print(Image.new('L', (2, 3)).rotate(90, expand=True).size)",
        "(3, 2)\n",
    ),
    "builtin-abs": ("import builtins\nbuiltins.abs = lambda x: -1", "print(abs(-2))", "2\n"),
    "sys-modules-json": ("import sys\nsys.modules['json'] = None", "import json\nprint(json.dumps(1))", "1\n"),
    "cv2-resize-none": ("cv2.resize = None", "print(cv2.resize(np.zeros((2, 2), np.uint8), (3, 3)).shape)", "(3, 3)\n"),
    "environment": (
        "import os\nos.environ['LEFTOVER'] = '1'",
        "import os\nprint(os.environ.get('LEFTOVER'))",
        "None\n",
    ),
    "display-replaced": (
        "import builtins\nbuiltins.display = None\ndisplay = None",
        "display(Image.new('L', (4, 4)))\nprint('shown')",
        "shown\n",
    ),
}


@pytest.mark.parametrize("setup,probe,clean", LEFTOVERS.values(), ids=LEFTOVERS.keys())
def test_nothing_leaks_into_the_next_session(sb: Sandbox, setup: str, probe: str, clean: str) -> None:
    """Files, background processes, variables, monkeypatched modules and builtins, and
    environment changes stay in the session that made them."""
    with sb.session() as s:
        assert s.run(setup).status == "ok"
        dirty = s.run(probe)
        assert (dirty.status, dirty.stdout) != ("ok", clean), "the probe cannot see the change"
    for _ in range(2):
        r = sb.run(probe)
        assert (r.status, r.stdout) == ("ok", clean), r
    assert_serving(sb)


KEYRING = code("""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    SYS_ADD_KEY, SYS_KEYCTL = 248, 250
    USER_KEYRING = -4
    KEYCTL_SET_TIMEOUT, KEYCTL_SEARCH, KEYCTL_READ = 15, 10, 11
    def put(desc, data, ttl):
        key = libc.syscall(SYS_ADD_KEY, b'user', desc, data, len(data), USER_KEYRING)
        if key >= 0:
            libc.syscall(SYS_KEYCTL, KEYCTL_SET_TIMEOUT, key, ttl)
        return key
    def get(desc):
        key = libc.syscall(SYS_KEYCTL, KEYCTL_SEARCH, USER_KEYRING, b'user', desc, 0)
        if key < 0:
            return None
        buf = ctypes.create_string_buffer(256)
        n = libc.syscall(SYS_KEYCTL, KEYCTL_READ, key, buf, 256)
        return buf.raw[:n].decode()
""")


def test_kernel_keyring_does_not_carry_data_between_sessions(sb: Sandbox) -> None:
    """A value stashed in the kernel's per-user keyring is not readable by later sessions
    (where the seccomp layer is on, the keyring calls are refused outright)."""
    desc = f"codevision-{TOKEN}".encode()
    with sb.session() as s:
        stored = s.run(KEYRING + f"print(put({desc!r}, b'stashed-{TOKEN}', 60) >= 0)")
        if sb.status()["isolation"]["available"].get("seccomp"):
            assert stored.stdout == "False\n"
        else:
            assert stored.stdout == "True\n"
            assert s.run(KEYRING + f"print(get({desc!r}))").stdout == f"stashed-{TOKEN}\n"
    found = [sb.run(KEYRING + f"print(get({desc!r}))").stdout for _ in range(6)]
    assert found == ["None\n"] * 6
    assert_serving(sb)


@pytest.mark.slow
def test_sessions_of_two_sandboxes_do_not_share_a_process_budget() -> None:
    """A session holding its whole process budget in one sandbox must not stop a session of
    another sandbox on the same host from forking."""
    hold = code("""
        import os, time
        kids = []
        try:
            while True:
                pid = os.fork()
                if pid == 0:
                    time.sleep(60)
                    os._exit(0)
                kids.append(pid)
        except OSError as exc:
            print(len(kids), exc.errno, os.getuid())
    """)
    fork_one = code("""
        import os
        try:
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
            print('forked', os.getuid())
        except OSError as exc:
            print(exc.errno, os.getuid())
    """)
    options = {"workers": 1, "timeout": 5.0, "max_processes": 8}
    with Sandbox(**options) as first, Sandbox(**options) as second, first.session() as a, second.session() as b:
        held = a.run(hold)
        assert held.stdout.split()[1] == str(errno.EAGAIN)
        r = b.run(fork_one)
        assert r.stdout.split()[0] == "forked", (
            f"sandbox 2 could not fork ({r.stdout.strip()}) while sandbox 1 held its processes ({held.stdout.strip()})"
        )
        assert_serving(second, b)


# ---------------------------------------------------------------------- input images
MUTATORS = {
    "paste": ("image.paste((255, 0, 0), (0, 0, 64, 48))", True),
    "image-draw": ("d = ImageDraw.Draw(image)\nd.rectangle((0, 0, 63, 47), fill=(0, 255, 0))", True),
    "putpixel-via-images": ("images[0].putpixel((1, 0), (1, 2, 3))\nimages.clear()", True),
    "pixel-access": ("px = image.load()\npx[5, 5] = (9, 9, 9)", True),
    "frombytes": ("image.frombytes(bytes(64 * 48 * 3))", True),
    "asarray-write": (
        code("""
        import ctypes
        a = np.asarray(image)
        try:
            a[:] = 0
        except ValueError:
            pass
        ctypes.memset(a.ctypes.data, 0, a.nbytes)
    """),
        False,
    ),
    "rebind-and-close": ("image.close()\nimage = None", False),
}


@pytest.mark.parametrize("program,mutates", MUTATORS.values(), ids=MUTATORS.keys())
def test_caller_input_image_is_never_mutated(sb: Sandbox, program: str, mutates: bool) -> None:
    """paste, ImageDraw, putpixel, pixel access, frombytes, raw writes into np.asarray memory
    and close: the session's copy may change, the caller's PIL image keeps its pixels, mode
    and size."""
    img = gradient_image()
    before = (img.mode, img.size, img.tobytes())
    with sb.session(images=[img]) as s:
        r = s.run(program)
        assert r.status == "ok", r.error
        if mutates:
            shown = s.run("display(image)")
            assert shown.images[0].tobytes() != before[2], "the program did not change the session's copy"
        assert_serving(sb, s)
    assert (img.mode, img.size, img.tobytes()) == before


def test_caller_input_array_is_never_mutated(sb: Sandbox) -> None:
    """An ndarray input written through np.asarray and paste stays unchanged for the caller."""
    arr = np.asarray(gradient_image()).copy()
    before = arr.copy()
    with sb.session(images=[arr]) as s:
        r = s.run("image.paste(0, (0, 0, 64, 48))\nprint(np.asarray(image).max())")
        assert (r.status, r.stdout) == ("ok", "0\n")
        assert_serving(sb, s)
    assert np.array_equal(arr, before)


# ---------------------------------------------------------------------- decompression bombs
PNG_BOMB = code("""
    import io, struct, zlib
    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    side = 60000
    rows = zlib.compress(bytes(1 + (side + 7) // 8) * 64, 9)
    png = (b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', side, side, 1, 0, 0, 0, 0))
           + chunk(b'IDAT', rows) + chunk(b'IEND', b''))
    assert len(png) < 4096
""")
BOMBS = {
    "png-bomb-default-guard": (PNG_BOMB + "Image.open(io.BytesIO(png)).load()", "DecompressionBombError"),
    "png-bomb-guard-disabled": (
        PNG_BOMB + "Image.MAX_IMAGE_PIXELS = None\nImage.open(io.BytesIO(png)).load()",
        "MemoryError",
    ),
}


@pytest.mark.parametrize("program,error_type", BOMBS.values(), ids=BOMBS.keys())
def test_decompression_bombs_inside_the_session(sb: Sandbox, program: str, error_type: str) -> None:
    """A 60000x60000 1-bit PNG of a few hundred bytes, opened and loaded: PIL's guard refuses
    it, and with the guard disabled the memory limit does."""
    with sb.session() as s:
        r = s.run(program)
        assert r.status == "error"
        assert r.error_type == error_type, r.error
        assert_serving(sb, s)


def lazy_png(width: int, height: int) -> Image.Image:
    buf = io.BytesIO()
    Image.new("1", (width, height)).save(buf, "PNG")
    return Image.open(io.BytesIO(buf.getvalue()))


def test_input_bomb_is_refused_before_any_session_starts(sb: Sandbox) -> None:
    """An input image above max_input_pixels is refused with a clear error, without a session."""
    live = sb.status()["live_sessions"]
    with pytest.raises(ValueError, match="max_input_pixels"):
        sb.session(images=[lazy_png(4000, 4000)]).open()
    with pytest.raises(ValueError, match="max_input_pixels"):
        sb.session(images=[np.zeros((3000, 2000), np.uint8)]).open()
    assert sb.status()["live_sessions"] == live
    assert_serving(sb)


def test_input_bomb_is_refused_without_decoding_it(sb: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """The size check uses the header: an oversized lazily opened image is never decoded on the host."""
    bomb = lazy_png(4000, 4000)
    decoded: list[bool] = []
    original = bomb.load
    monkeypatch.setattr(bomb, "load", lambda: (decoded.append(True), original())[1])
    with pytest.raises(ValueError, match="max_input_pixels"):
        sb.session(images=[bomb]).open()
    assert decoded == [], "the host decoded the whole oversized image before refusing it"
    assert_serving(sb)


def test_corrupt_input_image_is_refused_clearly(sb: Sandbox) -> None:
    """A truncated PNG given as input is refused with a clear error, without a session."""
    buf = io.BytesIO()
    gradient_image(256, 256).save(buf, "PNG")
    truncated = Image.open(io.BytesIO(buf.getvalue()[: len(buf.getvalue()) // 2]))
    with pytest.raises(ValueError, match="could not be decoded"):
        sb.session(images=[truncated]).open()
    assert_serving(sb)


# ---------------------------------------------------------------------- display
def test_zero_size_images_are_skipped_with_a_warning(sb: Sandbox) -> None:
    """display() of a 0x0 image and a 0-row array returns nothing and warns for each."""
    with sb.session() as s:
        r = s.run("display(Image.new('RGB', (0, 0)), np.zeros((0, 5, 3), np.uint8))")
        assert r.status == "ok"
        assert r.images == []
        assert len([w for w in r.warnings if "empty image" in w]) == 2
        assert_serving(sb, s)


def test_enormous_image_is_downscaled_to_the_pixel_budget(sb: Sandbox) -> None:
    """display() of an 8000x6000 image returns one image within max_image_pixels, same aspect."""
    with sb.session() as s:
        r = s.run("display(Image.new('L', (8000, 6000), 128))")
        assert r.status == "ok"
        assert len(r.images) == 1
        w, h = r.images[0].size
        assert w * h <= PIXEL_BUDGET
        assert abs(w / h - 8000 / 6000) < 0.01
        assert r.image_info[0].source_size == (8000, 6000)
        assert any("downscaled" in w for w in r.warnings)
        assert_serving(sb, s)


DISPLAY_ABUSE = {
    "extreme-aspect": ("display(Image.new('L', (5000, 2)))", 0, "aspect ratio"),
    "too-many-images": ("display(*[Image.new('L', (8, 8))] * 40)", 16, "at most 16 images"),
    "bad-array-shape": ("display(np.zeros((2, 2, 7)), np.zeros((2, 2, 2, 2)))", 0, "skipped an array"),
    "nan-inf-array": ("display(np.array([np.inf, -np.inf, np.nan, 1e308] * 3).reshape(3, 4))", 1, "rescaled"),
}


@pytest.mark.parametrize("program,count,warning", DISPLAY_ABUSE.values(), ids=DISPLAY_ABUSE.keys())
def test_display_abuse_is_bounded_and_warned(sb: Sandbox, program: str, count: int, warning: str) -> None:
    """Extremely elongated images, too many images, arrays of the wrong shape and NaN/inf
    arrays: bounded output and a warning."""
    with sb.session() as s:
        r = s.run(program)
        assert r.status == "ok", r.error
        assert len(r.images) == count
        assert any(warning in w for w in r.warnings), r.warnings
        assert_serving(sb, s)


def test_image_that_lies_about_its_size_does_not_hurt_the_host(sb: Sandbox) -> None:
    """An image whose tobytes() returns far more data than its size claims: the host rejects
    the result instead of building a bogus image."""
    with sb.session() as s:
        r = s.run("im = Image.new('L', (4, 4))\nim.tobytes = lambda *a, **k: b'\\0' * 10**6\ndisplay(im)")
        assert r.status == "crashed"
        assert r.images == []
        assert "describes a L image of 4x4 (16 bytes) but its buffer holds 1000000" in r.error  # refused unread
        assert_dead(s)
    assert_serving(sb)


# ---------------------------------------------------------------------- forged result frames
FIND_SOCKET = code("""
    import json, os, socket, struct
    fd = next(int(f) for f in os.listdir('/proc/self/fd')
              if os.path.exists(f'/proc/self/fd/{f}') and os.readlink(f'/proc/self/fd/{f}').startswith('socket:'))
    def frame(header, buffers=()):
        body = json.dumps(header).encode()
        return (struct.pack('<II', len(body), len(buffers)) + body
                + b''.join(struct.pack('<Q', n) for n in buffers))
""")
FORGERIES = {
    "garbage": "os.write(fd, b'\\xff' * 64)",
    "implausible-prefix": "os.write(fd, struct.pack('<II', 2**31, 4000))",
    "claims-killed": "os.write(fd, frame({'type': 'result', 'status': 'killed', 'stdout': 'FORGED'}))",
    "huge-image-claim": (
        "os.write(fd, frame({'type': 'result', 'status': 'ok', 'images': "
        "[{'mode': 'RGB', 'size': [100000, 100000]}]}, [3 * 10**10]))"
    ),
    "truncated-header": "import time\nos.write(fd, struct.pack('<II', 100, 0) + b'{')\ntime.sleep(0.2)",
    # Headers that would throw something other than a frame error into the host, or blow up its memory.
    "deep-json": (
        'body = b\'{"type":"result","status":"ok","x":\' + b\'[\' * 200_000 + b\']\' * 200_000 + b\'}\'\n'
        "os.write(fd, struct.pack('<II', len(body), 0) + body)"
    ),
    "5000-digit-number": (
        'body = b\'{"type":"result","status":"ok","duration":\' + b\'9\' * 5000 + b\'}\'\n'
        "os.write(fd, struct.pack('<II', len(body), 0) + body)"
    ),
    "image-size-2**40": (
        "os.write(fd, frame({'type': 'result', 'status': 'ok', 'seq': 1, "
        "'images': [{'mode': 'RGB', 'size': [2**40, 0]}]}, [0]))"
    ),
    "many-empty-lists": (
        'body = b\'{"type":"result","status":"ok","x":[\' + b\'[],\' * 3_000_000 + b\'[]]}\'\n'
        "socket.socket(fileno=os.dup(fd)).sendall(struct.pack('<II', len(body), 0) + body)"
    ),
    # A string that never ends, of escaped quotes: a backtracking scan held the host's GIL for minutes.
    "never-ending-string": (
        'body = b\'{"type":"result","status":"ok","x":"\' + b\'\\\\"\' * 2_000_000\n'
        "socket.socket(fileno=os.dup(fd)).sendall(struct.pack('<II', len(body), 0) + body)"
    ),
    "60-MB-header": "socket.socket(fileno=os.dup(fd)).sendall(struct.pack('<II', 60 * 2**20, 0) + b'[' * 2**20)",
    "close-socket": "os.close(fd)",
    "shutdown-socket": "socket.socket(fileno=os.dup(fd)).shutdown(socket.SHUT_RDWR)",
}


@pytest.mark.parametrize("program", FORGERIES.values(), ids=FORGERIES.keys())
def test_garbage_on_the_result_socket_kills_only_that_session(sb: Sandbox, program: str) -> None:
    """Garbage, implausible sizes, forbidden statuses, oversized image claims, truncated frames, a closed
    socket, and headers built to throw into the host or fill its memory: the run is 'crashed' (never an
    exception), the host and other sessions are unaffected."""
    with sb.session() as other, sb.session() as s:
        r = s.run(FIND_SOCKET + program)
        assert r.status == "crashed"
        assert "FORGED" not in r.stdout
        assert r.images == []
        assert_dead(s)
        assert_serving(sb, other)


def test_forged_result_frame_does_not_desynchronise_the_session(sb: Sandbox) -> None:
    """A well-formed fake 'ok' frame written by code that then fails: either the session is
    declared dead, or every later run still gets its own result."""
    forge = FIND_SOCKET + code("""
        os.write(fd, frame({'type': 'result', 'status': 'ok', 'stdout': 'FORGED'}))
        raise ValueError('the real outcome')
    """)
    with sb.session() as s:
        r = s.run(forge)
        if r.session_alive:
            nxt = s.run("print(1+1)")
            assert (nxt.status, nxt.stdout) == ("ok", "2\n"), (
                f"forged cell returned {(r.status, r.stdout)}; the next cell returned "
                f"{(nxt.status, nxt.stdout, nxt.error_type)}"
            )
        else:
            assert r.status == "crashed"
    assert_serving(sb)


def test_a_header_of_millions_of_empty_lists_costs_the_host_little_memory(sb: Sandbox) -> None:
    """Nine megabytes of ``[],`` used to become 1.5 GB of lists in the host; it is refused unparsed now."""
    program = FIND_SOCKET + FORGERIES["many-empty-lists"]
    with sb.session() as s:
        tracemalloc.start()
        try:
            r = s.run(program)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert r.status == "crashed" and "arrays and objects" in (r.error or "")
    assert peak < 100 * 2**20, f"the host allocated {peak / 2**20:.0f} MiB to refuse the frame"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    header=st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)),
        lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)),
        max_leaves=30,
    ).map(lambda extra: {"type": "result", "status": "ok", "seq": 1, "extra": extra}),
    images=st.lists(
        st.fixed_dictionaries(
            {
                "mode": st.sampled_from(["RGB", "L", "1", "F", "P", ""]),
                "size": st.lists(st.sampled_from([0, -1, 2**31, 2**40]) | st.integers(0, 40), min_size=2, max_size=2),
            }
        ),
        max_size=2,
    ),
    fields=st.dictionaries(
        st.sampled_from(["ops", "warnings", "error", "bases", "trace_problems", "status", "seq", "stdout"]),
        st.recursive(
            st.one_of(st.none(), st.integers(-(2**70), 2**70), st.text(max_size=10), st.floats(allow_nan=False)),
            lambda inner: st.one_of(
                st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(["mode", "size", "id", "name"]), inner)
            ),
            max_leaves=12,
        ),
        max_size=4,
    ),
    buffers=st.lists(st.integers(0, 64), max_size=3),
)
def test_fuzzed_result_frames_only_ever_crash_the_session(
    sb: Sandbox, header: dict[str, Any], images: list[dict[str, Any]], fields: dict[str, Any], buffers: list[int]
) -> None:
    header.update(fields, images=images)
    # One buffer per image, of the length its size declares when that is small: the decoder is reached.
    declared = [image["size"][0] * image["size"][1] * 3 for image in images]
    buffers = [n if 0 <= n <= 256 else 0 for n in declared] + buffers[: 1 if not images else 0]
    program = FIND_SOCKET + code(
        """
        os.write(fd, frame(@HEADER@, @LENGTHS@) + b''.join(b'x' * n for n in @LENGTHS@))
        """,
        HEADER=header,
        LENGTHS=buffers,
    )
    with sb.session() as s:
        r = s.run(program)  # anything but a RunResult would raise here
    assert r.status in ("crashed", "ok", "error")
    if r.status == "crashed":
        assert "SandboxError" in (r.error or "")


# ---------------------------------------------------------------------- text fields
TEXT_BOMBS = {
    # The count in the note is the session's (the whole error), not the host's second look at a cut one.
    "error": ("raise ValueError('E' * 30_000_000)", "error", r"\n\[\.\.\. 299837\d\d characters cut\]$"),
    "traceback": (
        "def a(n):\n    return b(n)\ndef b(n):\n    return a(n)\na(0)",
        "error",
        r"\n\[\.\.\. \d{5,} characters cut\]$",
    ),
    "error-type": (
        "raise type('X' * 20_000_000, (Exception,), {})()",
        "error_type",
        r"^X{200}\n\[\.\.\. 19999800 characters cut\]$",
    ),
    "warnings": (
        "display.__self__.warnings.extend(['W' * 1_000_000] * 300)",
        "warnings",
        r"^(W{500}\n\[\.\.\. 999500 characters cut\]\n){64}\[\.\.\. 236 more warnings cut\]$",
    ),
    "warnings-replaced": ("display.__self__.warnings = 'W' * 30_000_000", "warnings", "replaced by a str"),
}


@pytest.mark.parametrize(("program", "field", "note"), TEXT_BOMBS.values(), ids=TEXT_BOMBS.keys())
def test_every_text_field_of_a_result_is_capped_with_a_note(sb: Sandbox, program: str, field: str, note: str) -> None:
    with sb.session(images=[gradient_image()]) as s:
        r = s.run(program)
        value = getattr(r, field)
        text = "\n".join(value) if isinstance(value, list) else value
        assert text is not None and len(text) < 70_000, (field, len(text or ""))
        assert re.search(note, text), text[-200:]
        assert_serving(sb, s)


# ---------------------------------------------------------------------- host liveness
def test_host_survives_a_burst_of_hostile_sessions(sb: Sandbox) -> None:
    """Segfault, os._exit, a fork bomb and a memory bomb at the same time from threads: every
    result is contained and the sandbox serves afterwards."""
    programs = {
        "segfault": ("import ctypes\nctypes.string_at(0)", {"crashed"}),
        "exit": ("import os\nos._exit(0)", {"crashed"}),
        "fork": (
            "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
            {"timeout", "killed"},
        ),
        "memory": ("x = bytearray(8 * 1024**3)", {"error"}),
    }
    results: dict[str, RunResult] = {}
    lock = threading.Lock()

    def one(name: str) -> None:
        r = sb.run(programs[name][0], timeout=TIMEOUT)
        with lock:
            results[name] = r

    threads = [threading.Thread(target=one, args=(name,)) for name in programs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert {name: r.status in programs[name][1] for name, r in results.items()} == dict.fromkeys(programs, True)
    assert_serving(sb)


def test_sessions_see_neither_host_details_nor_the_project_beyond_the_sandbox(sb: Sandbox) -> None:
    """The kernel command line is empty, the cgroup paths are the session's own root, and of the
    codevision package only the sandbox (what a session runs) is there: no rewards, no scorers."""
    program = code("""
        import json, os, codevision
        package = os.path.dirname(codevision.__file__)
        out = {'cmdline': open('/proc/cmdline').read(), 'package': sorted(os.listdir(package))}
        out['cgroups'] = sorted({line.rstrip().split(':', 2)[2] for line in open('/proc/self/cgroup')})
        try:
            import codevision.rewards
            out['rewards'] = 'imported'
        except ImportError as exc:
            out['rewards'] = type(exc).__name__
        out['reward_source'] = os.path.exists(os.path.join(package, 'rewards', 'codevision.py'))
        print(json.dumps(out))
    """)
    available = sb.status()["isolation"]["available"]
    with sb.session() as s:
        out = last_json(s.run(program))
        if available.get("mount_namespace"):
            assert out["cmdline"] == ""
            assert out["package"] == ["__init__.py", "sandbox"]
            assert out["rewards"] == "ModuleNotFoundError" and out["reward_source"] is False
        if available.get("cgroups"):
            assert out["cgroups"] == ["/"]
        assert_serving(sb, s)
