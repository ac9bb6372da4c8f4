"""Cost of the sandbox as TRL's GRPO environment: per tool call, per training step, and at the recipe's scale.

codevision's GRPO environment (``codevision.train.environment``) wraps each tool call of a
rollout: the protocol reads the arguments, ``EpisodeTools`` runs the code in the rollout's sandbox
session, records the returned images and verifies their lineage, and the protocol's observation is
rendered as content blocks with the images at the model's size. One run measures:

1. Per call: ``env.code_image_tool(...)`` after ``reset()`` against ``session.run(...)`` on an open
   sandbox session with the same image and code (the bare cost), rollout by rollout (the first call
   of a rollout opens its session and is timed apart from the warm ones), the sides taking turns
   so that background load hits all. A third side adds to each bare run the resize of its returned
   image to the model's size, which the environment does once and the processor would otherwise do
   before the training forward pass (it is most of a 1-MP call, and it slows the sandbox run after
   it too). A fourth side, the environment with timers wrapped around its parts, splits a call into
   the sandbox run, the executor hop, image recording, the lineage check, ``asyncio.run``,
   ``render_observation`` and ``to_chat`` (with the resize). The target is a warm call costing at
   most twice the bare call at p50.
2. Per GRPO step: TRL 1.16's ``GRPOTrainer`` with the tiny Qwen3-VL, the shipped chat template and
   the environment, its sampler scripted with the sign example's tool call and answer (sleeping
   ``--generation-ms`` per turn to stand in for a model). The step's wall time is split into
   generation, tool calls, environment resets, the reward, the rest of TRL's rollout work, and the
   optimisation (forward, backward, optimiser step), with the tool calls' share.
3. At the recipe's scale (512 completions per step, up to 12 tool calls each, TRL running the calls
   of a process one sample after another): the tool time per step from the measured 1-MP per-call
   cost, against an assumed generation time per step (``--recipe-generation-s``).

Images are sized by the Qwen3-VL release processor's budget (32-pixel factor, 65,536 to 16,777,216
pixels) in part 1, by the tiny model's processor in part 2. Every call's outcome is checked, so an
error can never pass for speed. The figures are ratios and shares; nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import functools
import io
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from codevision.chat.budget import ImageBudget
from codevision.chat.tools import method_from_schema
from codevision.protocols import get_protocol
from codevision.protocols.base import Protocol
from codevision.sandbox import RunResult, Sandbox
from codevision.train.environment import SandboxEnvironment, environment_class
from codevision.train.rollouts import RolloutReward

OVERHEAD_TARGET = 2.0  # warm environment call / bare session.run, p50, 1-MP rotation
# The Qwen3-VL release processors' budget (patch 16 x merge 2; shortest_edge / longest_edge in pixels).
QWEN3_VL_BUDGET = ImageBudget(factor=32, min_pixels=65_536, max_pixels=16_777_216)
# CodeVision's GRPO recipe (ANCHORS.md): batch 64 x n=8 completions, at most 12 assistant turns, 16 GPUs.
RECIPE_COMPLETIONS = 512
RECIPE_MAX_CALLS = 12
RECIPE_GPUS = 16
# An assumption, not a measurement (../shared/reference/engines.md gives no vLLM throughput figures):
# 512 completions x ~3,000 sampled tokens (think + code over several turns) = ~1.5 M tokens per step, at
# ~2,000 output tokens/s per GPU for a 7-8B VLM under vLLM at high concurrency on the recipe's 16 GPUs,
# is ~48 s; rounded up for image prefill and the step's longest rollout, whose turns cannot overlap.
RECIPE_GENERATION_S = 60.0

ENV = "environment"
BARE = "session.run"
# The bare run plus the resize to the model's size that the environment does once per returned image:
# without it the processor would do the same resize before the training forward pass.
FITTED = "session.run + resize"
PROBED = "environment, timed parts"
SYSTEMS = (ENV, BARE, FITTED, PROBED)
BARE_SIDES = (BARE, FITTED)


class BenchmarkError(RuntimeError):
    """A measured call did not do what the case expects; its timing would be meaningless."""


@dataclass(frozen=True)
class Case:
    """One tool call: its code, the input it runs on, and whether it returns an image."""

    key: str
    title: str
    code: str
    size: tuple[int, int] | None  # None: the sign example's own photo
    returns_image: bool


ROTATE_1MP = Case("rotate_1mp", "rotate 90°, 1 MP (1000x1000)", "display(image.rotate(90))", (1000, 1000), True)
ROTATE_SMALL = Case("rotate_small", "rotate 90°, sign photo (520x300)", "display(image.rotate(90))", None, True)
PRINT = Case("print", "print(1), 1-MP input", "print(1)", (1000, 1000), False)
CASES = (ROTATE_1MP, ROTATE_SMALL, PRINT)


def make_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """A photo-like RGB image: smooth gradients plus sensor-like noise, deterministic."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [255 * x / max(width - 1, 1), 255 * y / max(height - 1, 1), 127.5 + 127.5 * np.sin((x + y) / 97.0)], axis=-1
    )
    noisy = base + rng.normal(0.0, 12.0, base.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def case_image(case: Case) -> Image.Image:
    if case.size is None:
        from codevision.demo import SIGN

        return SIGN.task().load_images()[0].convert("RGB")
    return make_image(*case.size)


def p50_p95(samples: Sequence[float]) -> tuple[float, float]:
    if not samples:
        return float("nan"), float("nan")
    p50, p95 = np.percentile(np.asarray(samples, dtype=float), [50, 95])
    return float(p50), float(p95)


def mean(samples: Sequence[float]) -> float:
    return statistics.fmean(samples) if samples else float("nan")


def ms(seconds: float) -> float:
    return seconds * 1000.0


# ---------------------------------------------------------------- part 1: one call


class Probe:
    """Durations and instants of the parts of the environment call in progress (the probed side only)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, float]] = []
        self._parts: dict[str, float] = {}
        self._marks: dict[str, float] = {}

    def start(self) -> None:
        self._parts, self._marks = defaultdict(float), {"call_start": time.perf_counter()}

    def add(self, part: str, seconds: float) -> None:
        self._parts[part] += seconds

    def mark(self, name: str) -> None:
        self._marks[name] = time.perf_counter()

    def wrap(self, part: str, function: Callable[..., Any], *, marks: bool = False) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            if marks:
                self._marks[f"{part}_start"] = started
            try:
                return function(*args, **kwargs)
            finally:
                ended = time.perf_counter()
                self.add(part, ended - started)
                if marks:
                    self._marks[f"{part}_end"] = ended

        return timed

    def finish(self) -> None:
        """Turn the call's marks into parts that add up to the whole call."""
        marks, parts = self._marks, dict(self._parts)
        marks["call_end"] = time.perf_counter()
        whole = marks["call_end"] - marks["call_start"]
        execute = marks["execute_end"] - marks["execute_start"]
        render_start = marks.get("render_observation_start", marks["call_end"])
        render_end = marks.get("render_observation_end", marks["call_end"])
        run, arun = parts.get("sandbox_run", 0.0), parts.get("arun", 0.0)
        opened, action = parts.get("session_open", 0.0), parts.get("action_for", 0.0)
        recorded, lineage = parts.get("add_image", 0.0), parts.get("record_run", 0.0)
        resize = parts.get("model_size_resize", 0.0)
        self.calls.append(
            {
                "whole": whole,
                "session_open": opened,
                "sandbox_run": run,
                "executor_hop": arun - run,
                "add_image": recorded,
                "record_run": lineage,
                "episode_rest": execute - opened - arun - recorded - lineage,
                "action_for": action,
                "asyncio_run": (marks["execute_start"] - marks["call_start"] - action)
                + (render_start - marks["execute_end"]),
                "render_observation": render_end - render_start,
                "model_size_resize": resize,
                "to_chat_rest": marks["call_end"] - render_end - resize,
            }
        )


PARTS = (
    ("sandbox_run", "sandbox run (Session.run, in its worker thread)"),
    ("executor_hop", "executor hop around it (Session.arun)"),
    ("add_image", "image recording (EpisodeTools.add_image)"),
    ("record_run", "lineage check (LineageTracker.record_run)"),
    ("episode_rest", "rest of EpisodeTools (ToolOutcome, bookkeeping)"),
    ("action_for", "arguments to an action (protocol.action_for, json)"),
    ("asyncio_run", "asyncio.run: new loop, start, teardown"),
    ("render_observation", "protocol.render_observation"),
    ("model_size_resize", "to_chat: resize to the model's size (ModelImages)"),
    ("to_chat_rest", "to_chat: the rest, and the content blocks"),
)


class ProbedSession:
    """A sandbox session whose ``arun`` times the run in its worker thread and the hop around it."""

    def __init__(self, inner: Any, probe: Probe) -> None:
        self._inner = inner
        self._probe = probe

    async def __aenter__(self) -> ProbedSession:
        started = time.perf_counter()
        await self._inner.__aenter__()
        self._probe.add("session_open", time.perf_counter() - started)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._inner.__aexit__(*exc)

    def close(self) -> None:
        self._inner.close()

    async def arun(self, code: str, timeout: float | None = None, image_index: int | None = None) -> RunResult:
        # The same hop as SessionAPI.arun: the session's own executor runs the blocking call.
        def run() -> RunResult:
            started = time.perf_counter()
            try:
                return self._inner.run(code, timeout, image_index)
            finally:
                self._probe.add("sandbox_run", time.perf_counter() - started)

        started = time.perf_counter()
        result = await asyncio.get_running_loop().run_in_executor(self._inner._executor, run)
        self._probe.add("arun", time.perf_counter() - started)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class ProbedSandbox:
    """Hands out probed sessions of a real sandbox."""

    def __init__(self, inner: Sandbox, probe: Probe) -> None:
        self._inner = inner
        self._probe = probe

    def session(self, images: Any = (), *, timeout: float | None = None) -> ProbedSession:
        return ProbedSession(self._inner.session(images, timeout=timeout), self._probe)


class ProbedImages(Sequence[Image.Image]):
    """The episode's model-sized images, timing each access (the first one of an image resizes it)."""

    def __init__(self, inner: Any, probe: Probe) -> None:
        self._inner = inner
        self._probe = probe

    def append_index(self) -> None:
        self._inner.append_index()

    def __len__(self) -> int:
        return len(self._inner)

    def __getitem__(self, index: Any) -> Any:
        started = time.perf_counter()
        try:
            return self._inner[index]
        finally:
            self._probe.add("model_size_resize", time.perf_counter() - started)


def probed_environment_class(
    protocol: Protocol, sandbox: Sandbox, budget: ImageBudget, probe: Probe
) -> type[SandboxEnvironment]:
    """The environment class with timers around its parts; the code it runs is the real one.

    The protocol is this bench's own copy, so timing its methods touches no shared object.
    """
    base = environment_class(copy.copy(protocol), ProbedSandbox(sandbox, probe), budget)  # type: ignore[arg-type]
    # The class holds the protocol under TRL's call rules, a copy of its own: time that one's methods.
    own = base.protocol
    own.action_for = probe.wrap("action_for", own.action_for)  # type: ignore[method-assign]
    own.render_observation = probe.wrap("render_observation", own.render_observation, marks=True)  # type: ignore[method-assign]

    class Probed(base):  # type: ignore[valid-type,misc]
        def reset(self, **row: Any) -> None:
            super().reset(**row)
            tools = self.tools
            assert tools is not None
            tools.add_image = probe.wrap("add_image", tools.add_image)  # type: ignore[method-assign]
            tools.lineage.record_run = probe.wrap("record_run", tools.lineage.record_run)  # type: ignore[method-assign]
            tools.model_images = ProbedImages(tools.model_images, probe)  # type: ignore[assignment]

        def _call(self, name: str, arguments: dict[str, Any]) -> Any:
            probe.start()
            try:
                return super()._call(name, arguments)
            finally:
                probe.finish()

        async def _execute(self, action: Any, turn: int) -> Any:
            probe.mark("execute_start")
            try:
                return await super()._execute(action, turn)
            finally:
                probe.mark("execute_end")

    # The protocol's tool methods call the function they were made with, not ``self._call``: remake them.
    for schema in own.tool_schemas():
        setattr(Probed, schema["function"]["name"], method_from_schema(schema, Probed._call))
    return Probed


@dataclass
class Rollout:
    """One rollout's timings (ms): setup (reset / open), the first call, the warm calls, the release."""

    setup: float
    first: float
    warm: list[float]
    release: float


def check_blocks(blocks: Any, env: SandboxEnvironment, case: Case) -> None:
    if not isinstance(blocks, list):
        raise BenchmarkError(f"the environment answered {case.key!r} with text: {str(blocks)[:300]}")
    outcome = env.outcomes[-1]
    images = sum(1 for block in blocks if block.get("type") == "image")
    if outcome.status != "ok" or images != int(case.returns_image):
        raise BenchmarkError(f"{case.key!r}: status {outcome.status}, {images} images: {outcome.error}")


def check_result(result: RunResult, case: Case) -> None:
    if not result.ok or len(result.images) != int(case.returns_image):
        raise BenchmarkError(
            f"session.run on {case.key!r}: {result.status}, {len(result.images)} images: {result.error}"
        )


def env_rollout(env: SandboxEnvironment, image: Image.Image, case: Case, calls: int) -> Rollout:
    started = time.perf_counter()
    env.reset(images=[image], task_id=f"bench-{case.key}", question="bench")
    setup = time.perf_counter() - started
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        blocks = env.code_image_tool(code=case.code, image_index=0)  # type: ignore[attr-defined]
        times.append(time.perf_counter() - started)
        check_blocks(blocks, env, case)
    started = time.perf_counter()
    env._release()
    release = time.perf_counter() - started
    return Rollout(ms(setup), ms(times[0]), [ms(t) for t in times[1:]], ms(release))


def bare_rollout(
    sandbox: Sandbox, image: Image.Image, case: Case, calls: int, budget: ImageBudget | None = None
) -> Rollout:
    """A session's runs on their own; with ``budget``, each returned image resized to the model's size too."""
    session = sandbox.session(images=[image])
    started = time.perf_counter()
    session.open()
    setup = time.perf_counter() - started
    times = []
    try:
        for _ in range(calls):
            started = time.perf_counter()
            result = session.run(case.code, image_index=0)
            if budget is not None:
                for returned in result.images:
                    budget.fit(returned)
            times.append(time.perf_counter() - started)
            check_result(result, case)
    finally:
        started = time.perf_counter()
        session.close()
        release = time.perf_counter() - started
    return Rollout(ms(setup), ms(times[0]), [ms(t) for t in times[1:]], ms(release))


def measure_calls(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    """Each case's rollouts on every side, rotating which goes first."""
    protocol = get_protocol()
    budget = QWEN3_VL_BUDGET
    report: dict[str, Any] = {"cases": {}, "parts": {}, "budget": budget.to_dict()}
    with Sandbox(workers=2, timeout=30.0, memory_mb=2048) as sandbox:
        plain = environment_class(protocol, sandbox, budget)()
        for case in CASES:
            console.print(f"[dim]per call: {case.title} …[/dim]")
            image = case_image(case)
            probe = Probe()
            probed = probed_environment_class(protocol, sandbox, budget, probe)()
            sides: dict[str, Callable[[], Rollout]] = {
                ENV: functools.partial(env_rollout, plain, image, case, args.calls),
                BARE: functools.partial(bare_rollout, sandbox, image, case, args.calls),
                FITTED: functools.partial(bare_rollout, sandbox, image, case, args.calls, budget),
                PROBED: functools.partial(env_rollout, probed, image, case, args.calls),
            }
            for side in sides.values():  # warm-up: imports, caches, the fork server's pool
                side()
            probe.calls.clear()
            rollouts: dict[str, list[Rollout]] = {side: [] for side in SYSTEMS}
            for number in range(args.rollouts):
                shift = number % len(SYSTEMS)
                order = SYSTEMS[shift:] + SYSTEMS[:shift]
                for side in order:
                    rollouts[side].append(sides[side]())
                    time.sleep(0.01)  # lets the fork server refill its pool of ready processes
            report["cases"][case.key] = {side: [asdict(r) for r in values] for side, values in rollouts.items()}
            report["parts"][case.key] = probe.calls
    loops = []
    for _ in range(200):
        started = time.perf_counter()
        asyncio.run(_nothing())
        loops.append(ms(time.perf_counter() - started))
    report["empty_asyncio_run_ms"] = loops
    return report


async def _nothing() -> None:
    return None


def warm(report: dict[str, Any], case: str, side: str) -> list[float]:
    return [t for rollout in report["cases"][case][side] for t in rollout["warm"]]


def firsts(report: dict[str, Any], case: str, side: str, with_setup: bool) -> list[float]:
    return [r["first"] + (r["setup"] if with_setup else 0.0) for r in report["cases"][case][side]]


def render_calls(report: dict[str, Any], args: argparse.Namespace, console: Console) -> dict[str, Any]:
    table = Table(
        title=f"Per tool call (ms): {args.rollouts} rollouts of {args.calls} calls per side and case, warm = calls 2..",
        caption="first: the environment's first call opens the session; session.run's is open + first run; "
        "release: the environment's _release() / the session's close()",
    )
    for column in (
        "case",
        "side",
        "n warm",
        "warm p50",
        "warm p95",
        "warm mean",
        "first p50",
        "reset p50",
        "release p50",
    ):
        table.add_column(column, justify="left" if column in ("case", "side") else "right")
    ratios = Table(title=f"environment / session.run (target: warm p50 <= {OVERHEAD_TARGET:g}x on the 1-MP rotation)")
    columns = ("warm p50", "warm p95", "warm mean", "first p50", "env - bare, warm p50 ms", "vs run + resize, p50")
    for column in ("case", *columns):
        ratios.add_column(column, justify="left" if column == "case" else "right")
    summary: dict[str, Any] = {}
    for case in CASES:
        figures = {}
        for index, side in enumerate(SYSTEMS):
            samples = warm(report, case.key, side)
            first = firsts(report, case.key, side, with_setup=side in BARE_SIDES)
            release = [r["release"] for r in report["cases"][case.key][side]]
            p50, p95 = p50_p95(samples)
            figures[side] = {
                "warm_p50": p50,
                "warm_p95": p95,
                "warm_mean": mean(samples),
                "first_p50": p50_p95(first)[0],
                "release_p50": p50_p95(release)[0],
                "reset_p50": p50_p95([r["setup"] for r in report["cases"][case.key][side]])[0],
            }
            table.add_row(
                case.title if index == 0 else "",
                side,
                str(len(samples)),
                f"{p50:.2f}",
                f"{p95:.2f}",
                f"{figures[side]['warm_mean']:.2f}",
                f"{figures[side]['first_p50']:.2f}",
                "-" if side in BARE_SIDES else f"{figures[side]['reset_p50']:.2f}",
                f"{figures[side]['release_p50']:.2f}",
                end_section=index == len(SYSTEMS) - 1,
            )
        env, bare = figures[ENV], figures[BARE]
        figures["ratio"] = {key: env[key] / bare[key] for key in ("warm_p50", "warm_p95", "warm_mean", "first_p50")}
        ratios.add_row(
            case.title,
            *(f"{figures['ratio'][key]:.2f}x" for key in ("warm_p50", "warm_p95", "warm_mean", "first_p50")),
            f"{env['warm_p50'] - bare['warm_p50']:.2f}",
            f"{env['warm_p50'] / figures[FITTED]['warm_p50']:.2f}x",
        )
        figures["ratio"]["warm_p50_vs_fitted"] = env["warm_p50"] / figures[FITTED]["warm_p50"]
        summary[case.key] = figures
    console.print(table)
    console.print(ratios)

    parts = Table(
        title="Where a warm environment call goes: mean ms over the timed-parts side's warm calls",
        caption="the parts add up to the whole call; share = part / whole",
    )
    parts.add_column("part")
    for case in CASES:
        parts.add_column(f"{case.key} mean", justify="right")
        parts.add_column("share", justify="right")
    warm_parts = {}
    for case in CASES:
        calls = report["parts"][case.key]
        # Each rollout's first call opens the session; keep the warm ones.
        warm_parts[case.key] = [call for number, call in enumerate(calls) if number % args.calls != 0]
    for key, label in (*PARTS, ("whole", "whole call")):
        cells = []
        for case in CASES:
            values = [ms(call[key]) for call in warm_parts[case.key]]
            whole = mean([ms(call["whole"]) for call in warm_parts[case.key]])
            cells += [f"{mean(values):.3f}", f"{100 * mean(values) / whole:.0f}%"]
        parts.add_row(label, *cells, end_section=key == PARTS[-1][0])
    console.print(parts)
    empty = p50_p95(report["empty_asyncio_run_ms"])[0]
    console.print(f"asyncio.run of an empty coroutine on its own: {empty:.3f} ms p50")
    summary["parts_mean_ms"] = {
        case.key: {key: mean([ms(call[key]) for call in warm_parts[case.key]]) for key, _ in (*PARTS, ("whole", ""))}
        for case in CASES
    }
    return summary


# ---------------------------------------------------------------- part 2: GRPO steps


@dataclass
class Step:
    seconds: float
    parts: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


class StepClock:
    """Seconds spent in each part of the training step in progress; nothing outside a step is kept."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self._started: float | None = None
        self._parts: dict[str, float] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)

    def begin(self) -> None:
        self._started = time.perf_counter()
        self._parts, self._counts = defaultdict(float), defaultdict(int)

    def add(self, part: str, seconds: float) -> None:
        if self._started is not None:
            self._parts[part] += seconds
            self._counts[part] += 1

    def end(self) -> None:
        if self._started is not None:
            self.steps.append(Step(time.perf_counter() - self._started, dict(self._parts), dict(self._counts)))
        self._started = None

    @contextlib.contextmanager
    def timing(self, part: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(part, time.perf_counter() - started)


def timed_environment_class(
    protocol: Protocol, sandbox: Sandbox, budget: ImageBudget, clock: StepClock, failures: list[str]
) -> type[SandboxEnvironment]:
    """The environment class TRL gets, with its tool calls and resets timed."""
    base = environment_class(protocol, sandbox, budget)

    class Timed(base):  # type: ignore[valid-type,misc]
        def reset(self, **row: Any) -> None:
            with clock.timing("reset"):
                super().reset(**row)

        def _call(self, name: str, arguments: dict[str, Any]) -> Any:
            with clock.timing("tool"):
                blocks = super()._call(name, arguments)
            if not isinstance(blocks, list) or not self.outcomes or self.outcomes[-1].status != "ok":
                failures.append(str(blocks)[:300])
            return blocks

    # The tool methods were made with SandboxEnvironment._call itself: remake them around the timed one.
    for schema in protocol.tool_schemas():
        setattr(Timed, schema["function"]["name"], method_from_schema(schema, Timed._call))
    return Timed


class TimedReward(RolloutReward):
    """codevision's reward function, timed."""

    def __init__(self, *args: Any, clock: StepClock, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clock = clock

    def __call__(self, *args: Any, **kwargs: Any) -> list[float]:
        with self.clock.timing("reward"):
            return super().__call__(*args, **kwargs)


def sign_rows(count: int) -> Any:
    """GRPO rows of the sign example, built as ``data export rl --format trl`` builds them."""
    from codevision.data.hf import without_none
    from codevision.data.rl import trl_grpo_dataset
    from codevision.demo import SIGN
    from codevision.eval import EvalItem

    return without_none(trl_grpo_dataset([EvalItem(SIGN.task())], get_protocol()).select([0] * count))


def measure_steps(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    """``trainer.train()`` for warm-up + measured steps, each step's time split by part."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import datasets
    import torch
    import transformers
    from trl import GRPOConfig, GRPOTrainer

    from codevision.chat import load_template
    from codevision.demo import SIGN
    from codevision.testing import build_tiny_qwen_vl
    from codevision.train.grpo import prepare_for_trl

    transformers.logging.set_verbosity_error()  # also turns the trainer's progress bars off
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' gradient_checkpointing renames
    clock = StepClock()
    failures: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="bench-train-grpo-"))
    try:
        started = time.perf_counter()
        model_dir = build_tiny_qwen_vl(work / "qwen3_vl", family="qwen3_vl")
        (model_dir / "chat_template.jinja").write_text(load_template(), encoding="utf-8")
        processor = transformers.AutoProcessor.from_pretrained(model_dir, trust_remote_code=True)
        prepare_for_trl(processor)  # as `train grpo` does
        tokenizer = processor.tokenizer
        end = tokenizer.convert_tokens_to_ids("<|im_end|>")
        call = [*tokenizer(SIGN.replies[0], add_special_tokens=False)["input_ids"], end]
        answers = [
            [*tokenizer(text, add_special_tokens=False)["input_ids"], end]
            for text in (SIGN.replies[1], "<answer>nothing</answer>")
        ]
        tool_response = tokenizer.convert_tokens_to_ids("<tool_response>")

        def sample(prompt_ids: list[list[int]]) -> list[list[int]]:
            """The sign example's tool call until a rollout has made its calls, then a right or a wrong answer."""
            with clock.timing("generation"):
                if args.generation_ms > 0:
                    time.sleep(args.generation_ms / 1000.0)
                replies = []
                for number, ids in enumerate(prompt_ids):
                    done = ids.count(tool_response)
                    replies.append(list(call) if done < args.calls_per_rollout else list(answers[number % 2]))
                return replies

        class TimedGRPOTrainer(GRPOTrainer):
            """TRL's trainer, timing its rollout phase (generation, tools, rewards and its own work on them)."""

            def _generate_and_score_completions(self, inputs: Any) -> Any:
                with clock.timing("rollout_phase"):
                    return super()._generate_and_score_completions(inputs)

        class Steps(transformers.TrainerCallback):
            def on_step_begin(self, *_: Any, **__: Any) -> None:
                clock.begin()

            def on_step_end(self, *_: Any, **__: Any) -> None:
                clock.end()

        protocol = get_protocol()
        budget = ImageBudget.from_processor(processor)
        steps = args.warmup_steps + args.steps
        with Sandbox(workers=2, timeout=30.0, memory_mb=1024) as sandbox:
            transformers.set_seed(0)
            model = transformers.AutoModelForImageTextToText.from_pretrained(model_dir)
            config = GRPOConfig(
                output_dir=str(work / "out"),
                use_cpu=True,
                bf16=False,
                report_to=[],
                per_device_train_batch_size=args.completions,
                num_generations=args.num_generations,
                max_completion_length=4096,
                max_tool_calling_iterations=args.calls_per_rollout,
                max_steps=steps,
                logging_steps=steps,
                learning_rate=1e-4,
                save_strategy="no",
                disable_tqdm=True,
            )
            trainer = TimedGRPOTrainer(
                model=model,
                reward_funcs=[TimedReward(protocol=protocol, spec=_reward_spec(), tokenizer=tokenizer, clock=clock)],
                args=config,
                train_dataset=sign_rows(max(8, args.completions)),
                processing_class=processor,
                environment_factory=timed_environment_class(protocol, sandbox, budget, clock, failures),
                callbacks=[Steps()],
            )
            # The generation step, scripted the way TRL's own tests (and codevision's) script it.
            trainer._generate_single_turn = lambda prompt_ids, *a, **k: (sample(prompt_ids), None)
            setup = time.perf_counter() - started
            console.print(
                f"[dim]GRPO: tiny Qwen3-VL built and trainer ready in {setup:.1f}s (not timed); "
                f"{steps} steps ({args.warmup_steps} warm-up) of {args.completions} completions x "
                f"{args.calls_per_rollout} tool calls, generation {args.generation_ms:g} ms per turn, "
                f"{torch.get_num_threads()} torch threads …[/dim]"
            )
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # the trainer prints its log lines
                trainer.train()
            train_seconds = time.perf_counter() - started
            for environment in trainer.environments or []:
                environment._release()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        raise BenchmarkError(f"{len(failures)} tool calls failed in training, e.g. {failures[0]}")
    measured = clock.steps[args.warmup_steps :]
    expected = args.completions * args.calls_per_rollout
    for step in clock.steps:
        if step.counts.get("tool", 0) != expected:
            raise BenchmarkError(f"a step made {step.counts.get('tool', 0)} tool calls, expected {expected}")
    logged = [entry for entry in trainer.state.log_history if "loss" in entry or "train_loss" in entry]
    return {
        "steps": [asdict(step) for step in measured],
        "warmup_steps": [asdict(step) for step in clock.steps[: args.warmup_steps]],
        "train_seconds": train_seconds,
        "calls_per_step": expected,
        "log": logged,
    }


def _reward_spec() -> Any:
    from codevision.rewards.spec import RewardSpec

    return RewardSpec()


STEP_PARTS = (
    ("generation", "generation (scripted sampler)"),
    ("tool", "tool calls (environment _call)"),
    ("reset", "environment resets (close the last session)"),
    ("reward", "reward (RolloutReward)"),
    ("trl_rollout", "TRL's rollout work (templating, image processing, parsing, logprobs)"),
    ("optimisation", "optimisation (forward, backward, optimiser step)"),
)


def step_parts(step: dict[str, Any]) -> dict[str, float]:
    parts = step["parts"]
    inside = sum(parts.get(key, 0.0) for key in ("generation", "tool", "reset", "reward"))
    return {
        "generation": parts.get("generation", 0.0),
        "tool": parts.get("tool", 0.0),
        "reset": parts.get("reset", 0.0),
        "reward": parts.get("reward", 0.0),
        "trl_rollout": parts.get("rollout_phase", 0.0) - inside,
        "optimisation": step["seconds"] - parts.get("rollout_phase", 0.0),
        "total": step["seconds"],
    }


def render_steps(report: dict[str, Any], args: argparse.Namespace, console: Console) -> dict[str, Any]:
    steps = [step_parts(step) for step in report["steps"]]
    calls = report["calls_per_step"]
    table = Table(
        title=f"GRPO step (s): mean of {len(steps)} steps after {args.warmup_steps} warm-up, "
        f"{args.completions} completions x {args.calls_per_rollout} calls = {calls} calls per step",
        caption=f"tiny Qwen3-VL on the CPU; generation scripted at {args.generation_ms:g} ms per turn",
    )
    for column in ("part", "mean s", "min s", "max s", "share"):
        table.add_column(column, justify="left" if column == "part" else "right")
    total = mean([s["total"] for s in steps])
    means = {}
    for key, label in (*STEP_PARTS, ("total", "whole step")):
        values = [s[key] for s in steps]
        means[key] = mean(values)
        table.add_row(
            label,
            f"{means[key]:.3f}",
            f"{min(values):.3f}",
            f"{max(values):.3f}",
            f"{100 * means[key] / total:.1f}%",
            end_section=key == STEP_PARTS[-1][0],
        )
    console.print(table)
    per_call = 1000 * means["tool"] / calls
    console.print(
        f"tool share of the step: {100 * means['tool'] / total:.1f}% ({per_call:.1f} ms per call on the sign photo); "
        f"tool calls + resets: {100 * (means['tool'] + means['reset']) / total:.1f}%; "
        f"train() took {report['train_seconds']:.1f}s for {args.warmup_steps + args.steps} steps"
    )
    return {"mean_s": means, "tool_ms_per_call": per_call}


# ---------------------------------------------------------------- part 3: the recipe's scale


def render_projection(calls: dict[str, Any], args: argparse.Namespace, console: Console) -> dict[str, Any]:
    """Tool seconds per step at 512 completions, sequential within a process, against the assumed generation."""
    env, bare = calls[ROTATE_1MP.key][ENV], calls[ROTATE_1MP.key][BARE]
    # Sums of many calls follow the mean, not the median.
    warm_env, warm_bare = env["warm_mean"] / 1000, bare["warm_mean"] / 1000
    first_env, first_bare = env["first_p50"] / 1000, bare["first_p50"] / 1000
    release_env, release_bare = env["release_p50"] / 1000, bare["release_p50"] / 1000
    completions, generation = args.recipe_completions, args.recipe_generation_s
    if generation == RECIPE_GENERATION_S:
        console.print(
            f"Assumed generation time per step: {generation:g} s. ../shared/reference/engines.md has no vLLM "
            "throughput figures, so this is an estimate, not a measurement: 512 completions x ~3,000 sampled "
            "tokens = ~1.5 M tokens per step, at ~2,000 output tokens/s per GPU (a 7-8B VLM under vLLM at high "
            "concurrency) on the recipe's 16 GPUs = ~48 s, rounded up for image prefill and the longest "
            "rollout's tail. Pass --recipe-generation-s for another figure."
        )
    table = Table(
        title=f"Projection: {completions} completions per step, 1-MP rotations, TRL's sequential tool loop",
        caption=f"generation per step assumed {generation:g} s (--recipe-generation-s); per process: the "
        f"{completions // args.recipe_ranks} completions each of {args.recipe_ranks} processes runs",
    )
    for column in (
        "calls per completion",
        "tool s/step, one process",
        "x generation",
        f"per process ({args.recipe_ranks})",
        "x generation",
        "bare sandbox s/step",
        "tool share of step, per process",
    ):
        table.add_column(column, justify="right")
    rows = []
    for per_completion in sorted({1, 4, RECIPE_MAX_CALLS, args.recipe_calls}):
        # A completion's calls: the first opens its session, the rest are warm; the next reset closes it.
        tool = completions * (first_env + (per_completion - 1) * warm_env + release_env)
        sandbox_only = completions * (first_bare + (per_completion - 1) * warm_bare + release_bare)
        local = tool / args.recipe_ranks
        rows.append(
            {
                "calls_per_completion": per_completion,
                "tool_s_one_process": tool,
                "tool_s_per_process": local,
                "bare_s_one_process": sandbox_only,
            }
        )
        table.add_row(
            str(per_completion),
            f"{tool:.1f}",
            f"{tool / generation:.2f}",
            f"{local:.1f}",
            f"{local / generation:.3f}",
            f"{sandbox_only:.1f}",
            f"{100 * local / (local + generation):.1f}%",
        )
    console.print(table)
    full = next(row for row in rows if row["calls_per_completion"] == args.recipe_calls)
    tool, local = full["tool_s_one_process"], full["tool_s_per_process"]
    breakeven_calls = generation / warm_env / completions
    console.print(
        f"At {args.recipe_calls} calls per completion, one process runs {completions * args.recipe_calls} calls one "
        f"after another: {tool:.1f} s of tool time per step ({1000 * warm_env:.1f} ms per warm call, "
        f"{1000 * first_env:.1f} ms for a session's first) against {generation:g} s of generation, "
        f"{tool / generation:.2f}x. TRL does not overlap the two (each turn's generation waits for every call of the "
        f"turn before), so the step takes about {tool + generation:.0f} s instead of {generation:g} s."
    )
    verdict = "IS the bottleneck" if tool > generation else "is NOT the bottleneck (generation is)"
    spread = "IS the bottleneck" if local > generation else "is NOT the bottleneck"
    console.print(
        f"Verdict: with one process running all {completions} completions' calls one after another, the sandbox "
        f"{verdict}: break-even is {breakeven_calls:.1f} warm calls per completion at {generation:g} s of "
        f"generation, or {tool:.0f} s of generation at {args.recipe_calls} calls. With the completions spread over "
        f"{args.recipe_ranks} processes (TRL runs each process's own completions' calls), the sandbox {spread}: "
        f"{local:.1f} s per step, {100 * local / (local + generation):.1f}% of the step. Of a warm call, "
        f"{100 * (1 - warm_bare / warm_env):.0f}% is the environment's own work and "
        f"{100 * warm_bare / warm_env:.0f}% the bare sandbox run."
    )
    return {"rows": rows, "warm_call_s": warm_env, "first_call_s": first_env, "breakeven_calls": breakeven_calls}


# ---------------------------------------------------------------- the run


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=(
            "Examples:\n"
            "  python bench/train_grpo.py                          the default run (about 2 minutes on 2 cores)\n"
            "  python bench/train_grpo.py --rollouts 5 --steps 2   smoke run\n"
            "  python bench/train_grpo.py --generation-ms 200      a model taking 200 ms per generation turn\n"
            "  python bench/train_grpo.py --recipe-generation-s 180 --json train_grpo.json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    calls = parser.add_argument_group("part 1: per call")
    calls.add_argument("--rollouts", type=int, default=20, help="rollouts per side and case (default 20)")
    calls.add_argument(
        "--calls", type=int, default=RECIPE_MAX_CALLS, help=f"calls per rollout (default {RECIPE_MAX_CALLS})"
    )
    steps = parser.add_argument_group("part 2: GRPO steps")
    steps.add_argument("--steps", type=int, default=4, help="measured optimiser steps (default 4)")
    steps.add_argument("--warmup-steps", type=int, default=1, help="steps run first and not reported (default 1)")
    steps.add_argument("--completions", type=int, default=8, help="completions per step (default 8)")
    steps.add_argument("--num-generations", type=int, default=2, help="completions per prompt (default 2)")
    steps.add_argument("--calls-per-rollout", type=int, default=2, help="tool calls per completion (default 2)")
    steps.add_argument(
        "--generation-ms", type=float, default=0.0, help="scripted sampler's sleep per generation turn (default 0)"
    )
    recipe = parser.add_argument_group("part 3: projection")
    recipe.add_argument(
        "--recipe-generation-s",
        type=float,
        default=RECIPE_GENERATION_S,
        help=f"generation seconds per step assumed at the recipe's scale (default {RECIPE_GENERATION_S:g}: "
        "~1.5 M sampled tokens at ~2,000 tokens/s per GPU on 16 GPUs, plus the longest rollout's tail)",
    )
    recipe.add_argument(
        "--recipe-completions", type=int, default=RECIPE_COMPLETIONS, help="completions per step (default 512)"
    )
    recipe.add_argument(
        "--recipe-calls", type=int, default=RECIPE_MAX_CALLS, help="tool calls per completion (default 12)"
    )
    recipe.add_argument(
        "--recipe-ranks", type=int, default=RECIPE_GPUS, help="training processes sharing the completions (default 16)"
    )
    parser.add_argument("--skip-grpo", action="store_true", help="leave out part 2 (no torch or TRL needed)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the raw figures as JSON")
    args = parser.parse_args(argv)
    if args.calls < 2 or args.rollouts < 1:
        parser.error("--calls must be at least 2 (the first call of a rollout opens its session) and --rollouts >= 1")
    if args.completions % args.num_generations:
        parser.error("--completions must be a multiple of --num-generations")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 150)
    bench_started = time.perf_counter()
    load_before = os.getloadavg()
    console.print(
        f"Python {platform.python_version()}; {os.cpu_count()} CPUs; load average "
        f"{', '.join(f'{v:.2f}' for v in load_before)}"
        f" at the start; part 1 budget: Qwen3-VL release processor ({QWEN3_VL_BUDGET.factor}-px factor, "
        f"{QWEN3_VL_BUDGET.min_pixels:,}..{QWEN3_VL_BUDGET.max_pixels:,} pixels)"
    )
    raw: dict[str, Any] = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    raw["calls"] = measure_calls(args, console)
    summary: dict[str, Any] = {"calls": render_calls(raw["calls"], args, console)}
    if not args.skip_grpo:
        raw["grpo"] = measure_steps(args, console)
        summary["grpo"] = render_steps(raw["grpo"], args, console)
    summary["projection"] = render_projection(summary["calls"], args, console)
    load_after = os.getloadavg()
    wall = time.perf_counter() - bench_started
    console.print(
        f"benchmark wall time {wall:.0f}s; load average {', '.join(f'{v:.2f}' for v in load_after)} at the end "
        f"({os.cpu_count()} CPUs): other work on the machine makes single runs noisy"
    )
    if args.json:
        raw.update({"summary": summary, "load_before": load_before, "load_after": load_after, "wall_seconds": wall})
        args.json.write_text(json.dumps(raw, indent=2, default=str))
        console.print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
