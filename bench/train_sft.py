"""Throughput of ``codevision train sft`` against TRL's own ``SFTTrainer`` VLM path, on the same conversations.

codevision trains with TRL's ``SFTTrainer`` but feeds it ready batches: every conversation is
rendered once by the chat renderer before training (``prepare``), and the collator only pads ids and
runs the image processor on each batch's images. TRL's own path re-templates and tokenises every
row in its collator (``DataCollatorForVisionLanguageModeling``). The target is codevision's
overhead at most 10% in samples/s and tokens/s against TRL's path in the same run.

Both sides train the same model (a fresh load each run, the vision tower frozen as codevision's
default), in float32 on the CPU, with the same ``SFTConfig`` (codevision's own, with TRL's dataset
handling put back for TRL's side), seed, batch size and number of steps, no checkpoints and one log
line at the end. The conversations are the bundled examples played through the agent loop and the
real sandbox, replicated to ``--rows`` trajectories; TRL's side reads them as codevision's TRL
export (``data export sft --format trl``), tool observations as ``tool`` messages with their images.
Both render with TRL's stock Qwen3-VL template, for which codevision's renderer and the processor's
render give the same ids. TRL's side uses ``assistant_only_loss``, for which TRL swaps in its
training copy of that template (``{% generation %}`` markers).

Each run is timed end to end: codevision's ``prepare()`` + ``train()`` (processor, rendering and
planning, model load, trainer, training); TRL's processor and model load, dataset load, trainer
construction and ``train()``. codevision's final save is included (TRL's side saves nothing). The
training loop alone (the trainer's ``train_runtime``) is reported too. Tokens are the attention-mask
tokens fed, from TRL's ``num_tokens`` metric, which both trainers count the same way. The sides run
alternately, ``--repeats`` times each, after an untimed warm-up of each; medians are reported.

As a correctness side note the script renders every conversation through both collators and
reports the ids, the tokens fed and the tokens trained on (labels other than -100) per conversation:
TRL's training template also trains the newline after each ``<|im_end|>``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

OVERHEAD_TARGET = 0.10
IGNORE_INDEX = -100


@dataclass
class Run:
    """One timed training run of one side."""

    side: str
    seconds: float
    loop_seconds: float
    samples: int
    tokens: int
    train_loss: float | None

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds

    @property
    def loop_samples_per_second(self) -> float:
        return self.samples / self.loop_seconds

    @property
    def loop_tokens_per_second(self) -> float:
        return self.tokens / self.loop_seconds


@dataclass
class Setup:
    """The inputs both sides train on."""

    model: Path
    template: Path
    trajectories: Path
    trl_dataset: Path
    work: Path
    trust_remote_code: bool
    steps: int
    batch_size: int
    seed: int
    learning_rate: float
    assistant_only_loss: bool = True
    notes: list[str] = field(default_factory=list)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=(
            "Examples:\n"
            "  python bench/train_sft.py                          tiny Qwen3-VL, 24 rows, 30 steps, 3 repeats\n"
            "  python bench/train_sft.py --steps 10 --repeats 1   smoke run\n"
            "  python bench/train_sft.py --model ~/models/Qwen3-VL-2B-Instruct --steps 5 --batch-size 1\n"
            "  python bench/train_sft.py --json train_sft.json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        type=Path,
        metavar="PATH",
        help="a local Qwen-VL checkpoint folder (default: a tiny random Qwen3-VL built for the run)",
    )
    parser.add_argument(
        "--trust-remote-code", action="store_true", help="allow code in --model's folder (always on for the tiny model)"
    )
    parser.add_argument(
        "--chat-template",
        type=Path,
        metavar="PATH",
        help="the template both sides render with (default: TRL's copy of the stock Qwen3-VL template)",
    )
    parser.add_argument(
        "--rows", type=int, default=24, help="conversations, the bundled examples repeated (default 24)"
    )
    parser.add_argument("--steps", type=int, default=30, help="optimiser steps per run (default 30)")
    parser.add_argument("--batch-size", type=int, default=2, help="conversations per step (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side, alternating (default 3)")
    parser.add_argument(
        "--warmup-steps", type=int, default=2, help="steps of the untimed warm-up run of each side (0: none; default 2)"
    )
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="(default 1e-4)")
    parser.add_argument("--seed", type=int, default=0, help="(default 0)")
    parser.add_argument(
        "--no-assistant-only-loss",
        action="store_true",
        help="TRL's side trains on every token (its default) instead of the assistant turns only",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    return parser.parse_args(argv)


def stock_template() -> Path:
    """TRL's copy of the stock Qwen3-VL chat template."""
    return Path(str(resources.files("trl").joinpath("chat_templates", "qwen3_vl.jinja")))


def build_trajectories(root: Path, rows: int) -> None:
    """The bundled examples played through the agent loop and the sandbox, saved ``rows`` times in turn."""
    from codevision.agent import run_agent
    from codevision.demo import EXAMPLES
    from codevision.policies import ScriptedPolicy
    from codevision.protocols import get_protocol
    from codevision.sandbox import Sandbox

    protocol = get_protocol()
    with Sandbox(workers=1, timeout=5.0, memory_mb=1024) as sandbox:
        played = [run_agent(e.task(), ScriptedPolicy(list(e.replies)), sandbox, protocol) for e in EXAMPLES]
    for trajectory in played:
        trajectory.score = {"correct": True}
    for number in range(rows):
        trajectory = played[number % len(played)]
        trajectory.save(root / f"{number:04d}-{trajectory.task_id}")


def settings_for(setup: Setup, steps: int, output_dir: Path) -> Any:
    from codevision.train.config import SFTSettings, build

    values = {
        "model": str(setup.model),
        "data": [str(setup.trajectories)],
        "output_dir": str(output_dir),
        "chat_template": str(setup.template),
        "trust_remote_code": setup.trust_remote_code,
        "dtype": "float32",
        "learning_rate": setup.learning_rate,
        "lr_scheduler": "constant",
        "num_epochs": 10_000,
        "max_steps": steps,
        "batch_size": setup.batch_size,
        "save_steps": 0,
        "logging_steps": steps,
        "seed": setup.seed,
        "report_to": "none",
    }
    return build(SFTSettings, values, where="bench")


def _loop_figures(log: list[dict[str, Any]]) -> tuple[float, int, float | None]:
    """The training loop's runtime, the tokens fed (TRL's ``num_tokens``) and the loss, from the log history."""
    runtime = next(entry["train_runtime"] for entry in reversed(log) if "train_runtime" in entry)
    tokens = next(int(entry["num_tokens"]) for entry in reversed(log) if "num_tokens" in entry)
    loss = next((entry["train_loss"] for entry in reversed(log) if "train_loss" in entry), None)
    return float(runtime), tokens, loss


def run_codevision(setup: Setup, steps: int) -> Run:
    """``prepare()`` + ``train()``, timed together, the final save included (TRL's side saves nothing)."""
    from codevision.train import sft

    output_dir = Path(tempfile.mkdtemp(prefix="codevision-", dir=setup.work))
    settings = settings_for(setup, steps, output_dir)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the trainer prints its log line
            started = time.perf_counter()
            outcome = sft.train(sft.prepare(settings))
            seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(output_dir, ignore_errors=True)
    loop, tokens, loss = _loop_figures(outcome.log)
    return Run("codevision", seconds, loop, steps * setup.batch_size, tokens, loss)


def trl_trainer(setup: Setup, steps: int, output_dir: Path, *, assistant_only_loss: bool) -> Any:
    """TRL's own VLM path: processor, model, the TRL export as a dataset, ``SFTTrainer`` with its collator."""
    import transformers
    import trl

    from codevision.data.hf import load_trl_dataset
    from codevision.train import sft
    from codevision.train.common import load_model

    settings = settings_for(setup, steps, output_dir)
    processor = transformers.AutoProcessor.from_pretrained(setup.model, trust_remote_code=setup.trust_remote_code)
    processor.chat_template = setup.template.read_text(encoding="utf-8")
    transformers.set_seed(setup.seed)
    model = load_model(settings, setup.model)
    dataset = load_trl_dataset(setup.trl_dataset)
    # codevision's SFTConfig, with TRL's dataset handling back: it templates and tokenises each row itself.
    config = dataclasses.replace(
        sft._trl_config(settings, output_dir, has_eval=False),
        dataset_kwargs=None,
        remove_unused_columns=True,
        assistant_only_loss=assistant_only_loss,
    )
    return trl.SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=processor)


def run_trl(setup: Setup, steps: int) -> tuple[Run, Any]:
    """Processor and model load, dataset load, trainer construction and ``train()``, timed together."""
    output_dir = Path(tempfile.mkdtemp(prefix="trl-", dir=setup.work))
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the trainer prints its log line
            started = time.perf_counter()
            trainer = trl_trainer(setup, steps, output_dir, assistant_only_loss=setup.assistant_only_loss)
            trainer.train()
            seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(output_dir, ignore_errors=True)
    loop, tokens, loss = _loop_figures(trainer.state.log_history)
    return Run("trl", seconds, loop, steps * setup.batch_size, tokens, loss), trainer


def compare_rows(setup: Setup, trainer: Any) -> list[dict[str, Any]]:
    """Each conversation through codevision's collator and TRL's: ids, tokens fed and tokens trained on."""
    from codevision.train import sft
    from codevision.train.sequences import Collator

    prepared = sft.prepare(settings_for(setup, 1, setup.work / "unused"))
    collator = Collator(prepared.plan.sequences, prepared.collected.conversations, prepared.renderer, prepared.budget)
    tokenizer = prepared.renderer.tokenizer
    rows = []
    for number in range(len(prepared.plan.sequences)):
        ours = collator([{"sequence": number}])
        theirs = trainer.data_collator([trainer.train_dataset[number]])
        ids, their_ids = ours["input_ids"][0].tolist(), theirs["input_ids"][0].tolist()
        labels, their_labels = ours["labels"][0].tolist(), theirs["labels"][0].tolist()
        # Position by position over the longer sequence; past its end a sequence trains nothing.
        width = max(len(ids), len(their_labels))
        labels += [IGNORE_INDEX] * (width - len(labels))
        their_labels += [IGNORE_INDEX] * (width - len(their_labels))
        trl_only = [
            tokenizer.decode([their_ids[at]])
            for at in range(width)
            if labels[at] == IGNORE_INDEX and their_labels[at] != IGNORE_INDEX
        ]
        codevision_only = sum(
            1 for at in range(width) if labels[at] != IGNORE_INDEX and their_labels[at] == IGNORE_INDEX
        )
        rows.append(
            {
                "conversation": Path(prepared.collected.conversations[number].where).parent.name,
                "ids": _compare_ids(ids, their_ids, tokenizer),
                "same_pixels": _same(ours.get("pixel_values"), theirs.get("pixel_values")),
                "same_grids": _same(ours.get("image_grid_thw"), theirs.get("image_grid_thw")),
                "tokens": [int(ours["attention_mask"].sum()), int(theirs["attention_mask"].sum())],
                "trained": [sum(t != IGNORE_INDEX for t in labels), sum(t != IGNORE_INDEX for t in their_labels)],
                "trl_only": trl_only,
                "codevision_only": codevision_only,
            }
        )
    return rows


def _compare_ids(ours: list[int], theirs: list[int], tokenizer: Any) -> str:
    """``same``; or which side is the other plus a tail (and the tail's text); or the first position they differ."""
    if ours == theirs:
        return "same"
    if theirs[: len(ours)] == ours:
        return f"TRL's = codevision's + {json.dumps(tokenizer.decode(theirs[len(ours) :]))}"
    if ours[: len(theirs)] == theirs:
        return f"codevision's = TRL's + {json.dumps(tokenizer.decode(ours[len(theirs) :]))}"
    first = next(at for at, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b)
    return f"differ from token {first}"


def _same(first: Any, second: Any) -> bool | None:
    import torch

    if first is None or second is None:
        return None if first is second else False
    return first.shape == second.shape and bool(torch.allclose(first, second, atol=1e-5))


def median_run(runs: list[Run]) -> dict[str, float]:
    return {
        "seconds": statistics.median(r.seconds for r in runs),
        "samples_per_second": statistics.median(r.samples_per_second for r in runs),
        "tokens_per_second": statistics.median(r.tokens_per_second for r in runs),
        "loop_seconds": statistics.median(r.loop_seconds for r in runs),
        "loop_samples_per_second": statistics.median(r.loop_samples_per_second for r in runs),
        "loop_tokens_per_second": statistics.median(r.loop_tokens_per_second for r in runs),
        "tokens": statistics.median(r.tokens for r in runs),
    }


def prepare_inputs(args: argparse.Namespace, work: Path, console: Console) -> Setup:
    from codevision.data.sft import export_sft
    from codevision.testing import build_tiny_qwen_vl

    started = time.perf_counter()
    if args.model is None:
        model, trust = build_tiny_qwen_vl(work / "qwen3_vl", family="qwen3_vl"), True
    else:
        model, trust = args.model.expanduser(), args.trust_remote_code
    trajectories = work / "trajectories"
    build_trajectories(trajectories, args.rows)
    exported = export_sft([trajectories], work / "trl", fmt="trl")
    if exported.skipped:
        raise SystemExit(f"the TRL export skipped trajectories: {exported.skipped[:3]}")
    console.print(
        f"model {model}{' (tiny Qwen3-VL)' if args.model is None else ''}; {args.rows} conversations saved and "
        f"exported for TRL in {time.perf_counter() - started:.1f}s (not timed)"
    )
    return Setup(
        model=model,
        template=(args.chat_template or stock_template()).expanduser(),
        trajectories=trajectories,
        trl_dataset=exported.path,
        work=work,
        trust_remote_code=trust,
        steps=args.steps,
        batch_size=args.batch_size,
        seed=args.seed,
        learning_rate=args.learning_rate,
        assistant_only_loss=not args.no_assistant_only_loss,
    )


def first_trl_run(setup: Setup, steps: int, console: Console) -> tuple[Run, Any]:
    """TRL's first run; if ``assistant_only_loss`` raises, say so and go on without it."""
    try:
        return run_trl(setup, steps)
    except Exception as exc:  # any refusal of TRL's is reported, then the run goes on without it
        if not setup.assistant_only_loss:
            raise
        note = f"TRL with assistant_only_loss failed ({type(exc).__name__}: {exc}); TRL trains on every token"
        console.print(f"[yellow]{note}[/yellow]")
        setup.notes.append(note)
        setup.assistant_only_loss = False
        return run_trl(setup, steps)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import datasets
    import torch
    import transformers

    transformers.logging.set_verbosity_error()  # also turns the trainers' progress bars off
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    console = Console(width=None if sys.stdout.isatty() else 120)
    bench_started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench-train-sft-"))
    try:
        setup = prepare_inputs(args, work, console)
        console.print(
            f"{args.steps} steps x batch {args.batch_size}, {args.repeats} timed run(s) per side, float32 on CPU "
            f"({torch.get_num_threads()} threads); template {setup.template.name}"
        )
        runs: dict[str, list[Run]] = {"codevision": [], "trl": []}
        trainer = None
        if args.warmup_steps > 0:
            run_codevision(setup, args.warmup_steps)
            _, trainer = first_trl_run(setup, args.warmup_steps, console)
        for repeat in range(args.repeats):
            # Alternate which side goes first, so drift (thermal, caches) falls on both.
            order = ("codevision", "trl") if repeat % 2 == 0 else ("trl", "codevision")
            for side in order:
                if side == "codevision":
                    runs[side].append(run_codevision(setup, args.steps))
                elif trainer is None:
                    run, trainer = first_trl_run(setup, args.steps, console)
                    runs[side].append(run)
                else:
                    run, trainer = run_trl(setup, args.steps)
                    runs[side].append(run)
                last = runs[side][-1]
                console.print(
                    f"  run {repeat + 1} {side:>10}: {last.seconds:6.2f}s end to end, loop {last.loop_seconds:6.2f}s, "
                    f"{last.tokens} tokens, loss " + (f"{last.train_loss:.4f}" if last.train_loss is not None else "-")
                )
        comparison = compare_rows(setup, trainer)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    medians = {side: median_run(side_runs) for side, side_runs in runs.items()}
    table = Table(
        title=f"SFT throughput: median of {args.repeats} run(s) per side, {args.steps} steps x {args.batch_size}"
    )
    table.add_column("side")
    table.add_column("end to end s", justify="right")
    table.add_column("samples/s", justify="right")
    table.add_column("tokens/s", justify="right")
    table.add_column("loop s", justify="right")
    table.add_column("loop samples/s", justify="right")
    table.add_column("loop tokens/s", justify="right")
    table.add_column("tokens fed", justify="right")
    labels = {"codevision": "codevision", "trl": "TRL"}
    for side, figures in medians.items():
        table.add_row(
            labels[side],
            f"{figures['seconds']:.2f}",
            f"{figures['samples_per_second']:.2f}",
            f"{figures['tokens_per_second']:.0f}",
            f"{figures['loop_seconds']:.2f}",
            f"{figures['loop_samples_per_second']:.2f}",
            f"{figures['loop_tokens_per_second']:.0f}",
            f"{figures['tokens']:.0f}",
        )
    console.print(table)

    ours, theirs = medians["codevision"], medians["trl"]
    metrics = ("samples_per_second", "tokens_per_second", "loop_samples_per_second", "loop_tokens_per_second")
    ratios = {key: ours[key] / theirs[key] for key in metrics}
    # The fastest run of each side: the least disturbed by other work on the machine.
    best = {
        key: max(getattr(run, key) for run in runs["codevision"]) / max(getattr(run, key) for run in runs["trl"])
        for key in metrics
    }
    for key, name in zip(
        metrics,
        ("samples/s, end to end", "tokens/s, end to end", "samples/s, training loop", "tokens/s, training loop"),
        strict=True,
    ):
        console.print(
            f"codevision/TRL {name}: {ratios[key]:.3f} (codevision overhead {1 / ratios[key] - 1:+.1%}; "
            f"target <= {OVERHEAD_TARGET:.0%}); best runs {best[key]:.3f}"
        )

    rows = Table(title="correctness side note: each example through both collators (codevision / TRL)")
    rows.add_column("conversation")
    rows.add_column("input ids")
    rows.add_column("pixels, grids")
    rows.add_column("tokens fed", justify="right")
    rows.add_column("tokens trained", justify="right")
    rows.add_column("trained by TRL only")
    seen: set[str] = set()
    for row in comparison:
        name = row["conversation"].split("-", 1)[-1]
        if name in seen:  # the copies render alike: one row per example
            continue
        seen.add(name)
        distinct = sorted(set(row["trl_only"]))
        if len(distinct) <= 4:
            extra = ", ".join(f"{json.dumps(text)} x{row['trl_only'].count(text)}" for text in distinct)
        else:  # TRL without assistant_only_loss: the prompt, the observations and the image pads
            extra = f"{len(row['trl_only'])} tokens of {len(distinct)} kinds"
        if row["codevision_only"]:
            extra += f"; {row['codevision_only']} trained by codevision only"
        rows.add_row(
            name,
            row["ids"],
            "same" if row["same_pixels"] and row["same_grids"] else f"{row['same_pixels']}, {row['same_grids']}",
            "{} / {}".format(*row["tokens"]),
            "{} / {}".format(*row["trained"]),
            extra or "-",
        )
    console.print(rows)
    kinds = sorted({row["ids"] for row in comparison})
    console.print(f"input ids over all {len(comparison)} conversations: {'; '.join(kinds)}")
    if not setup.assistant_only_loss:
        console.print("[yellow]TRL trained without assistant_only_loss: its loss covers every token[/yellow]")
    for note in setup.notes:
        console.print(f"note: {note}")
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    console.print(
        f"benchmark wall time {time.perf_counter() - bench_started:.0f}s; load average at the end {load} "
        f"({os.cpu_count()} CPUs): other work on the machine makes single runs noisy"
    )
    if args.json:
        raw = {
            "settings": {
                "model": str(setup.model),
                "template": str(setup.template),
                "rows": args.rows,
                "steps": args.steps,
                "batch_size": args.batch_size,
                "repeats": args.repeats,
                "assistant_only_loss": setup.assistant_only_loss,
            },
            "runs": {side: [dataclasses.asdict(run) for run in side_runs] for side, side_runs in runs.items()},
            "medians": medians,
            "ratios": ratios,
            "best_run_ratios": best,
            "conversations": comparison,
            "notes": setup.notes,
        }
        args.json.write_text(json.dumps(raw, indent=2))
        console.print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
