"""The demo's closing report: its numbers (``summary.json``), one page (``report.html``) and a few terminal lines.

Everything is read back from the files the stages wrote (the trainers' ``log_history.json``, each
evaluation's ``report.json``, the teacher's ``yield.json``), so the report can be rebuilt at any time
and a stage that did not run only leaves its rows empty. The page follows the evaluation report's
conventions: one file, SVG plots as data URIs drawn without pyplot, every text escaped, and relative
links to the evaluations' pages and to a viewer of the rollouts GRPO saved while it trained.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from matplotlib.figure import Figure

from codevision.eval import plots
from codevision.eval.report_html import CSS, POLICY
from codevision.eval.report_tables import VIEWER_FILE
from codevision.training_demo.tasks import CHANCE
from codevision.viewer import NoTrajectoriesFound, write_viewer

SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
ROLLOUTS_VIEWER = "rollouts.html"
#: The evaluated checkpoints, in the order the demo makes them, with their names on the page.
CHECKPOINTS = {"initial": "initial", "sft": "after SFT", "grpo": "after GRPO"}
ORIENTATIONS = {"none": "upright", "rotate_90": "90°", "rotate_180": "180°", "rotate_270": "270°"}
#: Logged values averaged for a curve's first and last value: one logged step alone is noisy.
ENDS = 5
TERM_PREFIX = "reward/codevision."
MISSING = "–"
#: Steps in the trailing mean of the GRPO curves.
SMOOTHING = 10
LINE_COLOUR = "#1d232a"

History = list[dict[str, Any]]


# ------------------------------------------------------------------ numbers


def _load(path: Path) -> Any:
    """A JSON file's content, or None where the stage that writes it has not run."""
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _history(root: Path, stage: str) -> History | None:
    return _load(root / "models" / stage / "log_history.json")


def _series(history: History | None, key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one logged key; entries without it (the trainer's closing summary) are skipped."""
    points = [(entry["step"], float(entry[key])) for entry in history or [] if key in entry and "step" in entry]
    return [step for step, _ in points], [value for _, value in points]


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _training(history: History | None, key: str, name: str) -> dict[str, Any] | None:
    """Steps trained and the curve's start and end, each the mean of ``ENDS`` logged values."""
    if history is None:
        return None
    _, values = _series(history, key)
    return {
        "steps": max((entry.get("step", 0) for entry in history), default=0),
        f"first_{name}": _mean(values[:ENDS]),
        f"last_{name}": _mean(values[-ENDS:]),
    }


def _checkpoint(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """The numbers of one evaluation that the before/after tables compare."""
    if report is None:
        return None
    rewards = report.get("rewards") or {}
    return {
        "items": report.get("scored"),
        "accuracy": report.get("accuracy"),
        "answered_in_format": rewards.get("answered_in_format"),
        "mean_reward": rewards.get("mean"),
        "tool_use": (report.get("tool_use") or {}).get("share_using_tools"),
        "crops_containing_target": (report.get("faithfulness") or {}).get("containing"),
        "orientations": {row["transform"]: row["accuracy"] for row in report.get("robustness", [])},
    }


def summarize(root: Path, stage_seconds: dict[str, float]) -> dict[str, Any]:
    """The demo's numbers, also written to ``ROOT/summary.json``; a stage not run gives None entries.

    ``stage_seconds`` may carry the run's wall-clock ``total`` (which includes the time between
    stages); without it the total is the stages' sum. Accuracies and shares are percentages,
    ``chance`` included.
    """
    root = Path(root)
    stages = {name: seconds for name, seconds in stage_seconds.items() if name != "total"}
    summary = {
        "stages": stages,
        "total_seconds": stage_seconds.get("total", round(sum(stages.values()), 1)),
        "chance": round(100 * CHANCE, 2),
        "checkpoints": {stage: _checkpoint(_load(root / "eval" / stage / "report.json")) for stage in CHECKPOINTS},
        "sft": _training(_history(root, "sft"), "loss", "loss"),
        "grpo": _training(_history(root, "grpo"), "reward", "reward"),
        "synth": _yields(root),
    }
    (root / SUMMARY_FILE).write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary


def _yields(root: Path) -> dict[str, Any] | None:
    """The teacher's yield per kind over both synthesis runs (tool solutions, direct answers)."""
    runs = [_load(root / folder / "yield.json") for folder in ("synth", "synth-direct")]
    merged = {kind: stats for run in runs if run for kind, stats in run.items()}
    return merged or None


# ------------------------------------------------------------------ shared tables


def _percent(value: float | None) -> str:
    return MISSING if value is None else f"{value:.1f}%"


def _reward(value: float | None) -> str:
    return MISSING if value is None else f"{value:.3f}"


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{seconds:.1f} s" if minutes == 0 else f"{minutes} min {rest:02d} s"


#: The before/after table's columns: (summary key, heading on the page, heading in a terminal, format).
COLUMNS: tuple[tuple[str, str, str, Callable[[float | None], str]], ...] = (
    ("accuracy", "accuracy", "accuracy", _percent),
    ("answered_in_format", "answered in format", "in format", _percent),
    ("mean_reward", "mean dense reward", "reward", _reward),
    ("tool_use", "tool use", "tool use", _percent),
    ("crops_containing_target", "crops containing the target", "crops on target", _percent),
)


def _before_after(summary: dict[str, Any]) -> list[list[str]]:
    """The before/after rows, formatted once for the page and the terminal: checkpoints, then chance."""
    rows = []
    for stage, name in CHECKPOINTS.items():
        numbers = summary["checkpoints"].get(stage) or {}
        rows.append([name] + [show(numbers.get(key)) for key, _, _, show in COLUMNS])
    rows.append(["chance", _percent(summary["chance"])] + [MISSING] * (len(COLUMNS) - 1))
    return rows


def _orientations(summary: dict[str, Any]) -> list[list[str]]:
    rows = []
    for stage, name in CHECKPOINTS.items():
        accuracies = (summary["checkpoints"].get(stage) or {}).get("orientations", {})
        rows.append([name] + [_percent(accuracies.get(transform)) for transform in ORIENTATIONS])
    return rows


def _stage_times(summary: dict[str, Any]) -> list[list[str]]:
    rows = [[name, _duration(seconds)] for name, seconds in summary["stages"].items()]
    return [*rows, ["total", _duration(summary["total_seconds"])]]


# ------------------------------------------------------------------ terminal


def _fixed_width(rows: list[list[str]]) -> list[str]:
    """Rows as aligned text: the first column left, the others right."""
    widths = [max(map(len, column)) for column in zip(*rows, strict=True)]
    return ["  ".join(_aligned(i, cell, widths[i]) for i, cell in enumerate(row)) for row in rows]


def _aligned(column: int, cell: str, width: int) -> str:
    return cell.ljust(width) if column == 0 else cell.rjust(width)


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The before/after table, chance included, and the time per stage, as plain lines for a terminal."""
    table = _fixed_width([["checkpoint"] + [short for _, _, short, _ in COLUMNS], *_before_after(summary)])
    times = _fixed_width(_stage_times(summary))
    return [*table, "", "time per stage:", *(f"  {line}" for line in times)]


# ------------------------------------------------------------------ plots


def _figure(rows: int = 1) -> tuple[Figure, list[Any]]:
    fig = Figure(figsize=(plots.WIDTH_IN, 3.0 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    for ax in axes:
        ax.grid(axis="y", linewidth=0.5, alpha=0.5)
        ax.spines[["top", "right"]].set_visible(False)
    axes[-1].set_xlabel("training step")
    return fig, list(axes)


def _legend(fig: Figure, entries: int) -> None:
    """Below the plot, outside the data, as the evaluation report's plots have it."""
    fig.legend(loc="outside lower center", ncols=min(plots.LEGEND_COLUMNS, entries), fontsize=8, frameon=False)


def loss_chart(history: History | None) -> Figure | None:
    """SFT's training loss per logged step; None without logged losses."""
    steps, losses = _series(history, "loss")
    if not steps:
        return None
    fig, (ax,) = _figure()
    ax.plot(steps, losses, marker="o", markersize=3, color=plots.BAR_COLOUR)
    ax.set_ylabel("loss")
    return fig


def _terms(history: History) -> list[str]:
    """The reward's terms that were not zero at every logged step; the others would only add flat lines."""
    keys = sorted({key for entry in history for key in entry if key.startswith(TERM_PREFIX)})
    return [key for key in keys if any(value != 0 for value in _series(history, key)[1])]


def _smoothed(values: list[float]) -> list[float]:
    """The trailing mean over ``SMOOTHING`` steps: a GRPO step averages only a few rollouts, so its own
    value is mostly noise, and the trend is what the plot is for."""
    return [
        sum(values[max(0, i - SMOOTHING + 1) : i + 1]) / (i - max(0, i - SMOOTHING + 1) + 1) for i in range(len(values))
    ]


def reward_chart(history: History | None) -> Figure | None:
    """GRPO's mean reward per step and the mean of each of its terms that ever paid or cost something."""
    steps, rewards = _series(history, "reward")
    if not steps:
        return None
    terms = _terms(history or [])
    fig, (ax,) = _figure()
    ax.axhline(0, linewidth=0.8, color=plots.REFERENCE_COLOUR)
    ax.plot(steps, rewards, linewidth=0.8, color=LINE_COLOUR, alpha=0.3, label="mean reward, each step")
    ax.plot(steps, _smoothed(rewards), linewidth=2.2, color=LINE_COLOUR, label=f"mean reward, last {SMOOTHING} steps")
    for key, colour in zip(terms, plots.palette(len(terms)), strict=True):
        shown, values = _series(history, key)
        ax.plot(shown, _smoothed(values), linewidth=1.4, color=colour, label=key.removeprefix("reward/"))
    ax.set_ylabel("reward (mean per rollout)")
    _legend(fig, len(terms) + 2)
    return fig


def tool_chart(history: History | None) -> Figure | None:
    """GRPO's tool calls per rollout (top), and the shares of rollouts answered and of calls failing (bottom)."""
    steps, calls = _series(history, "rollout/tool_calls")
    if not steps:
        return None
    fig, (top, bottom) = _figure(rows=2)
    top.plot(steps, calls, linewidth=0.8, alpha=0.3, color=plots.BAR_COLOUR)
    top.plot(steps, _smoothed(calls), linewidth=2.0, color=plots.BAR_COLOUR)
    top.set_ylabel("tool calls per rollout")
    top.set_ylim(bottom=0)
    shares = (("rollout/answer_rate", "rollouts answered"), ("rollout/tool_error_rate", "tool calls failing"))
    for (key, label), colour in zip(shares, plots.palette(len(shares)), strict=True):
        shown, values = _series(history, key)
        bottom.plot(shown, _smoothed([100 * value for value in values]), linewidth=1.6, color=colour, label=label)
    bottom.set_ylim(*plots.LIMITS)
    bottom.set_ylabel("share (%)")
    _legend(fig, len(shares))
    return fig


def _embed(caption: str, fig: Figure | None, absent: str) -> str:
    """The figure as an ``<img>`` of its SVG (the page's policy loads data URIs only), or a note saying why not."""
    if fig is None:
        return f'<p class="note">{_e(absent)}</p>'
    width, height = fig.get_size_inches() * 96
    data = base64.b64encode(plots.to_svg(fig).encode("utf-8")).decode("ascii")
    return (
        f'<figure><img src="data:image/svg+xml;base64,{data}" alt="{_e(caption)}" width="{round(width)}" '
        f'height="{round(height)}"><figcaption>{_e(caption)}</figcaption></figure>'
    )


# ------------------------------------------------------------------ page


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _cell(column: int, text: str) -> str:
    return f'<td class="num">{_e(text)}</td>' if column else f"<td>{_e(text)}</td>"


def _table(columns: list[str], rows: list[list[str]]) -> str:
    """A table whose first column names the row and whose other columns hold numbers."""
    head = "".join(f'<th scope="col"{" class=num" if i else ""}>{_e(c)}</th>' for i, c in enumerate(columns))
    body = "".join("<tr>" + "".join(_cell(i, text) for i, text in enumerate(row)) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _sentences(summary: dict[str, Any]) -> list[str]:
    """What happened, stage by stage, from the numbers the stages left; a stage not run is left out."""
    sentences = []
    synth = summary["synth"]
    if synth:
        accepted = sum(kind.get("accepted", 0) for kind in synth.values())
        attempted = sum(kind.get("attempted", 0) for kind in synth.values())
        direct = synth.get("direct", {}).get("accepted", 0)
        sentences.append(
            f"A scripted teacher solved {accepted} of {attempted} tasks through the real agent loop and sandbox: "
            f"{accepted - direct} with the tool (turn the picture upright with code, look at its top-right square) "
            f"and {direct} by answering directly, the shortcut GRPO has to unlearn."
        )
    sft, grpo = summary["sft"], summary["grpo"]
    if sft and sft["first_loss"] is not None:
        sentences.append(
            f"Supervised fine-tuning (SFT) of the tiny model on those trajectories ran {sft['steps']} steps; "
            f"its loss fell from {sft['first_loss']:.3f} to {sft['last_loss']:.3f}."
        )
    if grpo and grpo["first_reward"] is not None:
        sentences.append(
            f"GRPO then trained the SFT model {grpo['steps']} steps on other pictures with the dense codevision "
            f"reward; the mean reward of its rollouts went from {grpo['first_reward']:.3f} "
            f"to {grpo['last_reward']:.3f}."
        )
    evaluated = [
        f"{_percent(numbers['accuracy'])} ({name})"
        for stage, name in CHECKPOINTS.items()
        if (numbers := summary["checkpoints"].get(stage))
    ]
    if evaluated:
        sentences.append(
            "On held-out pictures, upright and turned by 90°, 180° and 270°, accuracy was "
            f"{', '.join(evaluated)}, against {_percent(summary['chance'])} for a guess among the three colours drawn."
        )
    sentences.append(f"The run took {_duration(summary['total_seconds'])}.")
    return sentences


def _href(root: Path, path: Path) -> str:
    return quote(path.relative_to(root).as_posix())


def _rollouts_viewer(root: Path) -> Path | None:
    """A viewer of the rollouts GRPO saved every few steps, where it saved any."""
    folders = sorted((root / "models" / "grpo" / "rollouts").glob("step-*"))
    if not folders:
        return None
    try:
        return write_viewer(folders, root / ROLLOUTS_VIEWER, self_contained=False)
    except NoTrajectoriesFound:
        return None


def _links(root: Path, rollouts: Path | None) -> str:
    """Relative links to every page there is: each evaluation's report and trajectories, and the rollouts."""
    items = []
    for stage, name in CHECKPOINTS.items():
        folder = root / "eval" / stage
        pages = [(folder / "report.html", "report"), (folder / VIEWER_FILE, "trajectories")]
        shown = [f'<a href="{_href(root, page)}">{_e(text)}</a>' for page, text in pages if page.exists()]
        if shown:
            items.append(f"<li>evaluation {_e(name)}: {', '.join(shown)}</li>")
    if rollouts is not None:
        items.append(f'<li><a href="{_href(root, rollouts)}">rollouts GRPO saved while training</a></li>')
    return f"<ul>{''.join(items)}</ul>" if items else '<p class="note">No evaluation has been written yet.</p>'


def _section(key: str, title: str, content: str) -> str:
    return f'<section id="{_e(key)}"><h2>{_e(title)}</h2>{content}</section>'


def _plots(root: Path) -> str:
    sft, grpo = _history(root, "sft"), _history(root, "grpo")
    return "".join(
        [
            _embed("SFT: training loss per step", loss_chart(sft), "SFT has not been run."),
            _embed(
                "GRPO: mean reward per step, and the mean of each term of the dense reward (the terms add up to "
                f"the reward; terms that were zero at every step are left out; trailing means over {SMOOTHING} steps)",
                reward_chart(grpo),
                "GRPO has not been run.",
            ),
            _embed(
                "GRPO: tool calls per rollout, and the shares of rollouts answered and of tool calls failing "
                f"(trailing means over {SMOOTHING} steps)",
                tool_chart(grpo),
                "GRPO has not been run.",
            ),
        ]
    )


def write_report(root: Path, summary: dict[str, Any]) -> Path:
    """Write ``ROOT/report.html`` (and the rollouts' viewer it links to); returns the page's path."""
    root = Path(root).resolve()
    title = "codevision demo train"
    before_after = _table(["checkpoint"] + [heading for _, heading, _, _ in COLUMNS], _before_after(summary))
    orientations = _table(["checkpoint", *ORIENTATIONS.values()], _orientations(summary)) + (
        f'<p class="note">The question is about the upright picture: answering from the picture as shown reads '
        f"the wrong quadrant in three orientations of four. A guess is right {_percent(summary['chance'])} of the "
        "time in each.</p>"
    )
    sections = [
        _section("before-after", "Before and after", before_after),
        _section("orientations", "Accuracy by orientation of the picture", orientations),
        _section("training", "Training curves", _plots(root)),
        _section("times", "Time per stage", _table(["stage", "time"], _stage_times(summary))),
        _section("pages", "Pages", _links(root, _rollouts_viewer(root))),
    ]
    intro = " ".join(_e(sentence) for sentence in _sentences(summary))
    page = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head>"
        f"<body><main><header><h1>{_e(title)}</h1><p>{intro}</p></header>{''.join(sections)}</main></body></html>\n"
    )
    path = root / REPORT_FILE
    path.write_text(page, encoding="utf-8")
    return path
