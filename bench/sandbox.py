"""Latency and throughput of ``codevision.sandbox`` against two reference ways of running image code.

The sandbox only earns its place if confinement costs little next to running the code
at all and clearly beats what most agent frameworks do instead, so one run measures:

(a) sandbox     calls inside a warm, confined session (and, separately, the cost of a
                session's whole life: open with a 1-MP input, first call, close);
(b) bare exec   ``exec`` in this process with the same pre-defined names: no isolation
                at all, the lower bound any sandbox is measured against;
(c) subprocess  a fresh ``python -c`` per call that imports NumPy, Pillow and OpenCV,
                opens the input from a PNG file and saves what it displays as PNG files
                that are read back: the stateless approach common in public code.

For (c) the input PNG is written once per case, outside the timing, which favours (c);
every call still pays for the interpreter, the imports, the PNG decode and the output
PNG round trip. Outputs of every call are checked, so an error can never pass for speed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import PIL
from PIL import Image, ImageEnhance
from rich.console import Console
from rich.table import Table

from codevision.lineage import LineageTracker
from codevision.sandbox import RunResult, Sandbox, Session
from codevision.trajectory import Trajectory

SPEEDUP_TARGET = 15.0  # (c) / (a) p50 on the 1-MP round trip
OVERHEAD_TARGET_MS = 10.0  # (a) - (b) p50 on the 1-MP round trip

WORKERS = 2
THROUGHPUT_SESSIONS = 8
LIFECYCLE_PAUSE = 0.05  # seconds between measured sessions, enough for the fork server to refill its pool
SANDBOX = "(a) sandbox"
BARE = "(b) bare exec"
SUBPROCESS = "(c) subprocess"
SYSTEMS = (SANDBOX, BARE, SUBPROCESS)

Call = Callable[[], None]


class BenchmarkError(RuntimeError):
    """A measured call did not produce what the case expects; its timing would be meaningless."""


@dataclass(frozen=True)
class Case:
    """One piece of model-like code, the input it runs on and the image it must return."""

    key: str
    title: str
    code: str
    image_size: tuple[int, int]
    output_size: tuple[int, int] | None


TRIVIAL = Case("trivial", "1 trivial (x = 1 + 1)", "x = 1 + 1", (1000, 1000), None)
ROTATE = Case(
    "rotate_1mp",
    "2 rotate 90°, 1 MP",
    "out = image.rotate(90, expand=True)\ndisplay(out)",
    (1000, 1000),
    (1000, 1000),
)
ENHANCE = Case(
    "crop_contrast_4mp",
    "3 crop+contrast, 4 MP",
    "region = image.crop((300, 300, 1700, 1700))\nout = ImageEnhance.Contrast(region).enhance(1.8)\ndisplay(out)",
    (2000, 2000),
    (1400, 1400),
)
CASES = (TRIVIAL, ROTATE, ENHANCE)

# The subprocess baseline's script around the model code: same names, PNG files in and out.
_CHILD_PRELUDE = """\
import sys
import cv2
import numpy as np
from PIL import Image, ImageEnhance
_shown = []
def display(*objects):
    _shown.extend(Image.fromarray(o) if isinstance(o, np.ndarray) else o for o in objects)
image = Image.open(sys.argv[1])
"""
_CHILD_EPILOGUE = """
for _index, _img in enumerate(_shown):
    _img.save(f"{sys.argv[2]}/out_{_index}.png")
"""


def make_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """A photo-like RGB image: smooth colour gradients plus sensor-like noise, deterministic.

    Pure noise would make PNG (and so the subprocess baseline) unrealistically slow, a flat
    image unrealistically fast.
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            255 * x / max(width - 1, 1),
            255 * y / max(height - 1, 1),
            127.5 + 127.5 * np.sin((x + y) / 97.0),
        ],
        axis=-1,
    )
    noisy = base + rng.normal(0.0, 12.0, base.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def _check_sizes(system: str, case: Case, sizes: Sequence[tuple[int, int]]) -> None:
    expected = [] if case.output_size is None else [case.output_size]
    if [tuple(size) for size in sizes] != expected:
        raise BenchmarkError(f"{system} returned images {list(sizes)} for case {case.key!r}, expected {expected}")


# ---------------------------------------------------------------- the three systems


def sandbox_call(session: Session, case: Case) -> Call:
    """One run of the case in a session that stays open between calls."""

    def call() -> None:
        result: RunResult = session.run(case.code)
        if not result.ok:
            raise BenchmarkError(f"{SANDBOX} failed on {case.key!r}: {result.status}: {result.error}")
        _check_sizes(SANDBOX, case, [img.size for img in result.images])

    return call


def bare_call(image: Image.Image, case: Case) -> Call:
    """One ``exec`` in a persistent namespace, compiling each time as the sandbox does."""
    shown: list[Image.Image] = []
    namespace: dict[str, Any] = {
        "__name__": "__main__",
        "image": image,
        "np": np,
        "cv2": cv2,
        "Image": Image,
        "ImageEnhance": ImageEnhance,
        "display": lambda *objects: shown.extend(objects),
    }

    def call() -> None:
        shown.clear()
        exec(case.code, namespace)
        _check_sizes(BARE, case, [img.size for img in shown])

    return call


def subprocess_call(input_png: Path, case: Case) -> Call:
    """One fresh interpreter per call, exchanging images as PNG files."""
    script = _CHILD_PRELUDE + case.code + "\n" + _CHILD_EPILOGUE

    def call() -> None:
        with tempfile.TemporaryDirectory(prefix="codevision-bench-") as out_dir:
            done = subprocess.run(
                [sys.executable, "-c", script, str(input_png), out_dir],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if done.returncode != 0:
                raise BenchmarkError(f"{SUBPROCESS} failed on {case.key!r}: {done.stderr.strip()[-500:]}")
            images = []
            for path in sorted(Path(out_dir).glob("out_*.png")):
                with Image.open(path) as img:
                    img.load()
                    images.append(img)
        _check_sizes(SUBPROCESS, case, [img.size for img in images])

    return call


# ---------------------------------------------------------------- measurement


def timed(call: Call) -> float:
    """Wall-clock milliseconds of one call: what an agent loop waits for."""
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000.0


def measure_latency(calls: dict[str, Call], repeats: dict[str, int], warmup: dict[str, int]) -> dict[str, list[float]]:
    """Time each system's call, interleaving systems so drifting background load hits all alike.

    A system with fewer repeats (the slow subprocess) is spread evenly over the rounds.
    """
    for system, call in calls.items():
        for _ in range(warmup[system]):
            call()
    rounds = max(repeats.values())
    samples: dict[str, list[float]] = {system: [] for system in calls}
    for index in range(rounds):
        for system, call in calls.items():
            stride = max(1, rounds // repeats[system])
            if index % stride == 0 and len(samples[system]) < repeats[system]:
                samples[system].append(timed(call))
    return samples


def measure_lineage(
    sandbox: Sandbox, images: dict[tuple[int, int], Image.Image], repeat: int
) -> dict[str, list[float]]:
    """Milliseconds the host spends verifying one run's returned image: following its trace, replaying the
    geometry from the input's pixels and comparing (what the agent loop adds to every run it records)."""
    samples: dict[str, list[float]] = {}
    for case in (ROTATE, ENHANCE):
        image = images[case.image_size]
        with sandbox.session(images=[image]) as session:
            results = [session.run(case.code) for _ in range(repeat)]
        times = []
        for result in results:
            trajectory = Trajectory(task_id="bench", protocol="codevision")
            trajectory.add_image(image, "input")
            tracker = LineageTracker(trajectory)
            tracker.start_session([0])
            indices = [trajectory.add_image(output, "tool", 0) for output in result.images]
            started = time.perf_counter()
            tracker.record_run(result, indices)
            times.append((time.perf_counter() - started) * 1000.0)
            lineage = trajectory.images[indices[0]].lineage
            if lineage is None or lineage.status != "verified":
                raise BenchmarkError(f"case {case.key!r}: the returned image was not verified ({lineage})")
        samples[case.key] = times
    return samples


def measure_lifecycle(sandbox: Sandbox, image: Image.Image, repeat: int, pause: float) -> dict[str, list[float]]:
    """Cost of a session's whole life: open (sending the input), first call, close.

    ``pause`` between sessions lets the fork server refill its pool of ready processes,
    as it can between trajectories of an agent; back-to-back sessions would also time that refill.
    """
    samples: dict[str, list[float]] = {"open": [], "first call": [], "close": [], "total": []}
    for index in range(repeat + 1):  # the first one warms up
        session = sandbox.session(images=[image])
        open_ms = timed(session.open)
        try:
            first_ms = timed(sandbox_call(session, ROTATE))
        finally:
            close_ms = timed(session.close)
        if index:
            for key, value in (("open", open_ms), ("first call", first_ms), ("close", close_ms)):
                samples[key].append(value)
            samples["total"].append(open_ms + first_ms + close_ms)
        time.sleep(pause)
    return samples


class FairSlots:
    """A FIFO worker pool: a freed slot goes to the longest waiter, never to a caller that barges in.

    ``threading.Semaphore`` lets a thread that releases a slot take it straight back, which
    starves the other sessions of a pool; the baseline should not suffer from that.
    """

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._lock = threading.Lock()
        self._waiters: deque[threading.Lock] = deque()

    def __enter__(self) -> None:
        with self._lock:
            if self._free and not self._waiters:
                self._free -= 1
                return
            waiter = threading.Lock()
            waiter.acquire()
            self._waiters.append(waiter)
        waiter.acquire()  # released by the caller that hands its slot over

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._free += 1


@dataclass
class Throughput:
    """Completed calls over the wall time until the last one finished, with each session's latencies.

    Latencies are kept per session because a pool can reach a high rate by serving a few
    sessions and starving the others; only the per-session counts and the maximum show that.
    """

    seconds: float
    latencies_ms: list[list[float]]

    @property
    def all_latencies_ms(self) -> list[float]:
        return [value for session in self.latencies_ms for value in session]

    @property
    def calls(self) -> int:
        return sum(len(session) for session in self.latencies_ms)

    @property
    def per_second(self) -> float:
        return self.calls / self.seconds


def measure_throughput(calls: Sequence[Call], duration: float, slots: FairSlots | None = None) -> Throughput:
    """Each call source loops on its own thread until ``duration`` has passed.

    ``slots`` is the worker pool of a system that has none of its own; a call that gets its
    slot after the deadline is not started, so queued calls cannot stretch the run. Latencies
    include the wait for a worker, as they do inside the sandbox.
    """
    start = threading.Barrier(len(calls) + 1)
    latencies: list[list[float]] = [[] for _ in calls]
    errors: list[BaseException] = []
    deadline = 0.0

    def loop(call: Call, out: list[float]) -> None:
        start.wait()
        try:
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                with slots if slots is not None else contextlib.nullcontext():
                    if time.perf_counter() >= deadline:
                        return
                    call()
                out.append((time.perf_counter() - began) * 1000.0)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=loop, args=(call, out), daemon=True) for call, out in zip(calls, latencies, strict=True)
    ]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline = began + duration
    start.wait()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    if errors:
        raise errors[0]
    return Throughput(seconds=seconds, latencies_ms=latencies)


def p50_p95(samples: Sequence[float]) -> tuple[float, float]:
    """Median and tail: the tail matters as much as the median for a loop that waits on each call."""
    p50, p95 = np.percentile(np.asarray(samples, dtype=float), [50, 95])
    return float(p50), float(p95)


# ---------------------------------------------------------------- the run


@dataclass
class Settings:
    """How many samples to take; the subprocess baseline gets fewer because each costs a new interpreter."""

    repeat: int
    subprocess_repeat: int
    duration: float
    lifecycle_repeat: int


def _settings(args: argparse.Namespace) -> Settings:
    """Defaults sized so a full run takes about a minute on two cores and ``--quick`` about 15 s."""
    if args.quick:
        return Settings(
            repeat=args.repeat or 20,
            subprocess_repeat=args.subprocess_repeat or 3,
            duration=args.duration or 1.0,
            lifecycle_repeat=max(1, (args.repeat or 20) // 2),
        )
    return Settings(
        repeat=args.repeat or 100,
        subprocess_repeat=args.subprocess_repeat or 20,
        duration=args.duration or 5.0,
        lifecycle_repeat=max(1, (args.repeat or 100) // 2),
    )


@contextlib.contextmanager
def png_inputs(images: dict[tuple[int, int], Image.Image]) -> Iterator[dict[tuple[int, int], Path]]:
    """The inputs of the subprocess baseline, written once as PNG like a framework would."""
    with tempfile.TemporaryDirectory(prefix="codevision-bench-in-") as folder:
        paths = {}
        for size, img in images.items():
            paths[size] = Path(folder) / f"input_{size[0]}x{size[1]}.png"
            img.save(paths[size])
        yield paths


def run(settings: Settings, console: Console) -> dict[str, Any]:
    images = {size: make_image(*size, seed=index) for index, size in enumerate(sorted({c.image_size for c in CASES}))}
    report: dict[str, Any] = {"environment": environment(), "settings": asdict(settings), "latency_ms": {}}
    started = time.perf_counter()
    # A generous time limit, so that a loaded machine slows calls down but never fails them.
    with Sandbox(workers=WORKERS, timeout=30.0, memory_mb=1024) as sandbox, png_inputs(images) as pngs:
        status = sandbox.status()
        report["environment"]["missing_isolation_layers"] = status["missing_layers"]
        report["environment"]["fork_server_baseline_mb"] = status["baseline_mb"]

        repeats = {SANDBOX: settings.repeat, BARE: settings.repeat, SUBPROCESS: settings.subprocess_repeat}
        warmup = {SANDBOX: 5, BARE: 5, SUBPROCESS: 1}
        for case in CASES:
            console.print(f"[dim]latency: case {case.title} …[/dim]")
            image = images[case.image_size]
            with sandbox.session(images=[image]) as session:
                calls = {
                    SANDBOX: sandbox_call(session, case),
                    BARE: bare_call(image, case),
                    SUBPROCESS: subprocess_call(pngs[case.image_size], case),
                }
                report["latency_ms"][case.key] = measure_latency(calls, repeats, warmup)

        console.print("[dim]lineage check …[/dim]")
        report["lineage_ms"] = measure_lineage(sandbox, images, settings.repeat)

        console.print("[dim]session lifecycle …[/dim]")
        report["lifecycle_ms"] = measure_lifecycle(
            sandbox, images[ROTATE.image_size], settings.lifecycle_repeat, LIFECYCLE_PAUSE
        )

        report["throughput"] = {}
        image = images[ROTATE.image_size]
        console.print(f"[dim]throughput: {THROUGHPUT_SESSIONS} sessions, {settings.duration:g} s per system …[/dim]")
        with contextlib.ExitStack() as stack:
            sessions = [stack.enter_context(sandbox.session(images=[image])) for _ in range(THROUGHPUT_SESSIONS)]
            sandbox_calls = [sandbox_call(session, ROTATE) for session in sessions]
            for call in sandbox_calls:
                call()
            report["throughput"][SANDBOX] = measure_throughput(sandbox_calls, settings.duration)
        bare_calls = [bare_call(image, ROTATE) for _ in range(THROUGHPUT_SESSIONS)]
        report["throughput"][BARE] = measure_throughput(bare_calls, settings.duration)
        process_calls = [subprocess_call(pngs[ROTATE.image_size], ROTATE) for _ in range(THROUGHPUT_SESSIONS)]
        report["throughput"][SUBPROCESS] = measure_throughput(process_calls, settings.duration, FairSlots(WORKERS))
    report["environment"]["loadavg_after"] = os.getloadavg()
    report["wall_seconds"] = time.perf_counter() - started
    return report


def environment() -> dict[str, Any]:
    """What the numbers depend on, including the load the machine was under."""
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "opencv": cv2.__version__,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "loadavg_before": os.getloadavg(),
    }


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The two goals the sandbox is built to, judged on the 1-MP round trip at p50."""
    rotate = report["latency_ms"][ROTATE.key]
    a50, b50, c50 = (p50_p95(rotate[system])[0] for system in SYSTEMS)
    return [
        {
            "target": f"(a) ≥ {SPEEDUP_TARGET:g}x faster than (c), 1-MP round trip, p50",
            "measured": f"{c50 / a50:.1f}x",
            "pass": c50 / a50 >= SPEEDUP_TARGET,
        },
        {
            "target": f"(a) - (b) ≤ {OVERHEAD_TARGET_MS:g} ms, 1-MP round trip, p50",
            "measured": f"{a50 - b50:.2f} ms",
            "pass": a50 - b50 <= OVERHEAD_TARGET_MS,
        },
    ]


def render(report: dict[str, Any], console: Console) -> None:
    """Print the tables and verdicts; ratios come after the raw percentiles they are computed from."""
    env = report["environment"]
    missing = env["missing_isolation_layers"]
    console.print(
        f"Python {env['python']}, NumPy {env['numpy']}, Pillow {env['pillow']}, OpenCV {env['opencv']}; "
        f"{env['cpus']} CPUs; load average {env['loadavg_before'][0]:.2f} before, "
        f"{env['loadavg_after'][0]:.2f} after; isolation layers missing: {', '.join(missing) or 'none'}"
    )

    latency = Table(
        title="Latency per call (ms), one warm session, one call at a time",
        caption="(c) starts a new interpreter per call; its input PNG is written once per case, untimed",
    )
    for column in ("Case", "System", "n", "p50", "p95"):
        latency.add_column(column, justify="left" if column in ("Case", "System") else "right")
    comparison = Table(title="Ratios at p50")
    for column in ("Case", "(c)/(a) speed-up", "(a)-(b) overhead ms"):
        comparison.add_column(column, justify="left" if column == "Case" else "right")
    for case in CASES:
        samples = report["latency_ms"][case.key]
        p50 = {}
        for index, system in enumerate(SYSTEMS):
            p50[system], p95 = p50_p95(samples[system])
            latency.add_row(
                case.title if index == 0 else "",
                system,
                str(len(samples[system])),
                f"{p50[system]:.2f}",
                f"{p95:.2f}",
                end_section=index == len(SYSTEMS) - 1,
            )
        comparison.add_row(case.title, f"{p50[SUBPROCESS] / p50[SANDBOX]:.1f}x", f"{p50[SANDBOX] - p50[BARE]:.2f}")
    console.print(latency)
    console.print(comparison)

    lineage = Table(
        title="Host lineage check per run (ms): trace followed, geometry replayed, pixels compared",
        caption="share: of the same case's (a) sandbox call at p50",
    )
    for column in ("Case", "n", "p50", "p95", "share"):
        lineage.add_column(column, justify="left" if column == "Case" else "right")
    for case in (ROTATE, ENHANCE):
        samples = report["lineage_ms"][case.key]
        p50, p95 = p50_p95(samples)
        call = p50_p95(report["latency_ms"][case.key][SANDBOX])[0]
        lineage.add_row(case.title, str(len(samples)), f"{p50:.2f}", f"{p95:.2f}", f"{100 * p50 / call:.0f}%")
    console.print(lineage)

    lifecycle = Table(
        title="(a) session lifecycle with a 1-MP input (ms)",
        caption=f"{LIFECYCLE_PAUSE * 1000:g} ms between sessions lets the pool of ready processes refill",
    )
    for column in ("Step", "n", "p50", "p95"):
        lifecycle.add_column(column, justify="left" if column == "Step" else "right")
    for step, samples in report["lifecycle_ms"].items():
        lifecycle.add_row(step, str(len(samples)), *(f"{v:.2f}" for v in p50_p95(samples)))
    console.print(lifecycle)

    throughput = Table(
        title=f"Throughput, case 2: {THROUGHPUT_SESSIONS} concurrent sessions",
        caption="latencies include the wait for a worker; per session: fewest-most calls of one session; "
        "(b) is one process sharing the GIL",
    )
    for column in ("System", "parallel", "calls", "calls/s", "p50 ms", "p95 ms", "max ms", "per session"):
        throughput.add_column(column, justify="left" if column == "System" else "right")
    for system in SYSTEMS:
        result: Throughput = report["throughput"][system]
        per_session = [len(session) for session in result.latencies_ms]
        parallel = f"{THROUGHPUT_SESSIONS} threads" if system == BARE else f"{WORKERS} workers"
        throughput.add_row(
            system,
            parallel,
            str(result.calls),
            f"{result.per_second:.1f}",
            *(f"{v:.1f}" for v in p50_p95(result.all_latencies_ms)),
            f"{max(result.all_latencies_ms):.1f}",
            f"{min(per_session)}-{max(per_session)}",
        )
    console.print(throughput)

    verdicts = Table(title="Targets")
    for column in ("Target", "Measured", "Result"):
        verdicts.add_column(column)
    for target in report["targets"]:
        verdicts.add_row(
            target["target"], target["measured"], "[green]PASS[/green]" if target["pass"] else "[red]FAIL[/red]"
        )
    console.print(verdicts)
    console.print(f"[dim]benchmark wall time {report['wall_seconds']:.1f} s[/dim]")


def to_json(report: dict[str, Any]) -> dict[str, Any]:
    """The report with raw samples, so other statistics can be computed later."""
    data = dict(report)
    data["throughput"] = {
        system: {
            "calls": t.calls,
            "seconds": t.seconds,
            "calls_per_second": t.per_second,
            "latencies_ms": t.latencies_ms,
        }
        for system, t in report["throughput"].items()
    }
    return data


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python bench/sandbox.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  python bench/sandbox.py                  full run (about 1-2 minutes)\n"
            "  python bench/sandbox.py --quick          smoke run (about 15 s)\n"
            "  python bench/sandbox.py --repeat 300 --json sandbox-bench.json\n"
            "\n"
            f"targets: (a) at least {SPEEDUP_TARGET:g}x faster than (c) on the 1-MP round trip, and\n"
            f"(a) minus (b) at most {OVERHEAD_TARGET_MS:g} ms, both at p50. They are reported as PASS/FAIL;\n"
            "the exit status is non-zero only when a measured call fails."
        ),
    )
    parser.add_argument(
        "--repeat",
        type=int,
        metavar="N",
        help="timed calls per case for (a) and (b), and half as many session lifecycles (default 100; 20 with --quick)",
    )
    parser.add_argument(
        "--subprocess-repeat",
        type=int,
        metavar="M",
        help="timed calls per case for (c), each a new interpreter (default 20; 3 with --quick)",
    )
    parser.add_argument(
        "--duration", type=float, metavar="S", help="seconds of throughput load per system (default 5; 1 with --quick)"
    )
    parser.add_argument("--quick", action="store_true", help="fewer samples, for a smoke run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the raw samples as JSON")
    args = parser.parse_args(argv)
    for name in ("repeat", "subprocess_repeat", "duration"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Wide enough for every table when the output goes to a file or a CI log rather than a terminal.
    console = Console(width=None if sys.stdout.isatty() else 110)
    report = run(_settings(args), console)
    report["targets"] = targets(report)
    render(report, console)
    if args.json is not None:
        args.json.write_text(json.dumps(to_json(report), indent=2))
        console.print(f"raw numbers written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
