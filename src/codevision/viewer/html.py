"""One static HTML page that shows trajectories turn by turn: text, code, outputs, images, op traces.

Everything is rendered here, in Python, as escaped HTML; the page's only script filters what is
already there. Model output, sandbox output and benchmark text are untrusted, so every string goes
through :func:`html.escape`, and a Content-Security-Policy allows no script but the page's own
(by hash) and no resource but embedded images: text that escaped escaping still could not run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from html import escape
from importlib import resources
from pathlib import Path
from typing import Literal

from PIL import Image
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

from codevision.sandbox.results import ImageOp, ImageRef
from codevision.trajectory import TRAJECTORY_FILE, Action, ImageRecord, Message, ToolOutcome, Trajectory, Turn
from codevision.viewer.collect import Collection, LoadedTrajectory, collect
from codevision.viewer.images import EmbeddedImage, load_embedded

Outcome = Literal["correct", "incorrect", "unknown"]
OUTCOMES: tuple[Outcome, ...] = ("correct", "incorrect", "unknown")
_OUTCOME_MARK = {"correct": "✓", "incorrect": "✗", "unknown": "?"}

_FORMATTER = HtmlFormatter(cssclass="code", wrapcode=True)
_LEXER = PythonLexer()
_THINK = re.compile(r"<think>(.*?)(?:</think>|\Z)", re.DOTALL)
_THINK_CLOSE = "</think>"
_PREVIEW_CHARS = 100


class NoTrajectoriesFound(ValueError):
    """Nothing under the given paths looked like a trajectory, so there is no page to write."""


def _static(name: str) -> str:
    return resources.files("codevision.viewer").joinpath("static", name).read_text(encoding="utf-8")


def _e(value: object) -> str:
    """Escape for element content and double-quoted attributes alike."""
    return escape(str(value), quote=True)


def outcome_of(trajectory: Trajectory) -> Outcome:
    """``correct``/``incorrect`` when the score says so with a boolean, else ``unknown``."""
    correct = (trajectory.score or {}).get("correct")
    if isinstance(correct, bool):
        return "correct" if correct else "incorrect"
    return "unknown"


def _reward(trajectory: Trajectory) -> float | None:
    reward = (trajectory.score or {}).get("reward")
    return float(reward) if isinstance(reward, (int, float)) and not isinstance(reward, bool) else None


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def split_think(text: str) -> list[tuple[bool, str]]:
    """Cut text into ``(is_thinking, part)`` pieces at ``<think>`` tags.

    A reply that starts with a bare ``</think>`` (chat templates often put the opening tag in
    the prompt) has everything before it counted as thinking; an unclosed ``<think>`` runs to the end.
    """
    parts: list[tuple[bool, str]] = []
    close, opening = text.find(_THINK_CLOSE), text.find("<think>")
    if close != -1 and (opening == -1 or close < opening):
        parts.append((True, text[:close]))
        text = text[close + len(_THINK_CLOSE) :]
    position = 0
    for match in _THINK.finditer(text):
        parts.append((False, text[position : match.start()]))
        parts.append((True, match.group(1)))
        position = match.end()
    parts.append((False, text[position:]))
    return [(thinking, part) for thinking, part in parts if part.strip()]


def _say(text: str) -> str:
    return f'<div class="say">{_e(text)}</div>'


def _thinking(text: str) -> str:
    return f'<div class="think"><span class="label">thinking</span>{_e(text)}</div>'


class _TrajectoryRenderer:
    """Renders one trajectory; remembers which images were shown so each is embedded once.

    ``embedded`` holds the images being encoded in the background, by index, for every image
    that has a file.
    """

    def __init__(self, loaded: LoadedTrajectory, embedded: dict[int, Future[EmbeddedImage]]) -> None:
        self.path = loaded.path
        self.trajectory = loaded.trajectory
        self.embedded = embedded
        self.shown: set[int] = set()

    # ------------------------------------------------------------------ images
    def image(self, index: int) -> str:
        """The image as a figure the first time it is asked for, a reference to it afterwards."""
        records = self.trajectory.images
        if not 0 <= index < len(records):
            return f'<span class="chip bad">image #{index} (not in this trajectory)</span>'
        if index in self.shown:
            return f'<span class="chip">image #{index} (above)</span>'
        self.shown.add(index)
        record = records[index]
        caption = self._caption(record)
        if index not in self.embedded:
            return self._missing(index, caption, "never saved with the trajectory")
        try:
            embedded = self.embedded[index].result()
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            return self._missing(index, caption, str(exc) or type(exc).__name__)
        return (
            f'<figure class="shot" data-index="{index}"><img src="{embedded.url}" alt="image #{index}" '
            f'width="{embedded.width}" height="{embedded.height}" loading="lazy" decoding="async">'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )

    @staticmethod
    def _caption(record: ImageRecord) -> str:
        where = "input" if record.origin == "input" else f"tool, turn {record.turn}"
        size = f"{record.size[0]}×{record.size[1]}"
        if record.model_size is not None and tuple(record.model_size) != tuple(record.size):
            size += f", model saw {record.model_size[0]}×{record.model_size[1]}"
        return f"#{record.index} · {where} · {size}{_lineage_note(record)}"

    @staticmethod
    def _missing(index: int, caption: str, reason: str) -> str:
        return (
            f'<figure class="shot missing" data-index="{index}"><div>image could not be shown: {_e(reason)}</div>'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )

    def images(self, indices: Iterable[int]) -> str:
        figures = "".join(self.image(index) for index in indices)
        return f'<div class="shots">{figures}</div>' if figures else ""

    # ------------------------------------------------------------------ text
    def message(self, message: Message) -> str:
        body = []
        for part in message.content:
            if part.type == "text":
                body.append(_say(part.text))
            else:
                body.append(self.images([part.index]))
        return f'<div class="msg"><span class="role">{_e(message.role)}</span>{"".join(body)}</div>'

    @staticmethod
    def block(kind: str, text: str | None) -> str:
        if not text:
            return ""
        return f'<div class="out {kind}"><span class="label">{kind}</span><pre>{_e(text)}</pre></div>'

    # ------------------------------------------------------------------ tools
    @staticmethod
    def _ref(ref: ImageRef | None) -> str:
        if ref is None:
            return "–"
        text = "?" if ref.id is None else f"#{ref.id}"
        if ref.size is not None:
            text += f" {ref.size[0]}×{ref.size[1]}"
        if ref.origin is not None:
            text += f" (input {ref.origin})"
        return _e(text)

    def ops(self, ops: list[ImageOp]) -> str:
        if not ops:
            return ""
        rows = []
        for number, op in enumerate(ops):
            args = ", ".join(f"{key}={json.dumps(value)}" for key, value in op.args.items() if value is not None)
            rows.append(
                f'<tr><td>{number}</td><td title="{_e(op.call)}">{_e(op.name)}</td><td>{_e(args)}</td>'
                f"<td>{'' if op.line is None else op.line}</td>"
                f"<td>{self._ref(op.operand)} → {self._ref(op.result)}</td></tr>"
            )
        return (
            '<table class="ops"><thead><tr><th>#</th><th>op</th><th>arguments</th><th>line</th>'
            f"<th>operand → result</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )

    @staticmethod
    def action(number: int, action: Action) -> str:
        if action.kind == "code":
            body = highlight(action.code or "", _LEXER, _FORMATTER)
        else:
            body = f'<div class="say">crop image #{_e(action.image_index)} to {_e(json.dumps(action.bbox))}</div>'
        return f'<div class="action"><span class="label">action {number} · {_e(action.kind)}</span>{body}</div>'

    def outcome(self, outcome: ToolOutcome) -> str:
        parts = [
            f'<div class="outcome status-{_e(outcome.status)}"><span class="label">result of action {outcome.action}'
            f" · {_e(outcome.status)} · {_seconds(outcome.seconds)}</span>",
            self.block("stdout", outcome.stdout),
            self.block("stderr", outcome.stderr),
            self.block("error", outcome.error),
            self.block("warnings", "\n".join(outcome.warnings)),
            self.images(outcome.image_indices),
            self.ops(outcome.ops),
            "</div>",
        ]
        return "".join(parts)

    # ------------------------------------------------------------------ turns
    def _text_and_actions(self, turn: Turn) -> Iterator[str]:
        """The reply with each code cell shown highlighted where the model wrote it, followed by its result.

        A cell whose raw text cannot be found in the reply (or was written while thinking)
        is shown after the reply, so nothing is ever dropped.
        """
        outcomes: dict[int, list[ToolOutcome]] = {}
        for outcome in turn.outcomes:
            outcomes.setdefault(outcome.action, []).append(outcome)
        pending = list(enumerate(turn.actions))

        def action_with_outcomes(number: int, action: Action) -> str:
            return self.action(number, action) + "".join(self.outcome(o) for o in outcomes.pop(number, []))

        for thinking, part in split_think(turn.text):
            if thinking:
                yield _thinking(part)
                continue
            position = 0
            while pending and pending[0][1].raw and (found := part.find(pending[0][1].raw, position)) != -1:
                number, action = pending.pop(0)
                if part[position:found].strip():
                    yield _say(part[position:found])
                yield action_with_outcomes(number, action)
                position = found + len(action.raw)
            if part[position:].strip():
                yield _say(part[position:])
        for number, action in pending:
            yield action_with_outcomes(number, action)
        for orphans in outcomes.values():
            yield "".join(self.outcome(o) for o in orphans)

    def turn(self, turn: Turn) -> str:
        facts = [
            f"{turn.usage.prompt_tokens} prompt + {turn.usage.completion_tokens} completion tokens",
            f"model {_seconds(turn.model_seconds)}",
            f"tools {_seconds(turn.tool_seconds)}",
        ]
        if turn.finish_reason:
            facts.append(f"finish: {turn.finish_reason}")
        parts = [
            f'<section class="turn"><h3>turn {turn.index} <small>{_e(" · ".join(facts))}</small></h3>',
            *self._text_and_actions(turn),
        ]
        if turn.answer is not None:
            parts.append(f'<div class="answer"><span class="label">answer</span>{_e(turn.answer)}</div>')
        if turn.issues:
            items = "".join(f"<li>{_e(issue)}</li>" for issue in turn.issues)
            parts.append(f'<div class="issues"><span class="label">issues</span><ul>{items}</ul></div>')
        if turn.observation:
            messages = "".join(self.message(m) for m in turn.observation)
            summary = "<summary>observation sent to the model</summary>"
            parts.append(f'<details class="observation">{summary}{messages}</details>')
        parts.append("</section>")
        return "".join(parts)

    # ------------------------------------------------------------------ whole trajectory
    def summary(self) -> str:
        t = self.trajectory
        outcome = outcome_of(t)
        reward = _reward(t)
        answer = t.final_answer if t.final_answer is not None else "(no answer)"
        preview = answer if len(answer) <= _PREVIEW_CHARS else answer[:_PREVIEW_CHARS] + "…"
        cells = [
            f'<span class="badge {outcome}" title="{outcome}">{_OUTCOME_MARK[outcome]}</span>',
            f'<span class="id">{_e(t.task_id)}</span>',
            f'<span class="tag">{_e(t.source or "(no source)")}</span>',
            f'<span class="tag">{_e(t.stop_reason)}</span>',
            f'<span class="tag">{len(t.turns)} turn{"" if len(t.turns) == 1 else "s"}</span>',
        ]
        if reward is not None:
            cells.append(f'<span class="tag">reward {reward:g}</span>')
        cells.append(f'<span class="preview">{_e(preview)}</span>')
        return f"<summary>{''.join(cells)}</summary>"

    def facts(self) -> str:
        t = self.trajectory
        outcome = outcome_of(t)
        reward = _reward(t)
        rows: list[tuple[str, str]] = [
            ("final answer", "–" if t.final_answer is None else t.final_answer),
            ("outcome", outcome + ("" if reward is None else f", reward {reward:g}")),
            ("stop reason", t.stop_reason),
            ("tokens", f"{t.usage.prompt_tokens} prompt + {t.usage.completion_tokens} completion"),
            ("time", _seconds(t.seconds)),
            ("model", t.model or "–"),
            ("protocol", t.protocol),
            ("benchmark", t.source or "–"),
            ("file", str(self.path)),
        ]
        other_scores = {k: v for k, v in (t.score or {}).items() if k not in ("correct", "reward")}
        if other_scores:
            rows.append(("score", json.dumps(other_scores, default=str)))
        body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
        return f'<table class="facts">{body}</table>'

    def render(self, expanded: bool = False) -> str:
        t = self.trajectory
        inputs = [record.index for record in t.images if record.origin == "input"]
        references = "".join(f"<li>{_e(r)}</li>" for r in t.references) or "<li>–</li>"
        parts = [
            f'<details class="traj" data-outcome="{outcome_of(t)}" data-stop="{_e(t.stop_reason)}" '
            f'data-source="{_e(t.source)}"{" open" if expanded else ""}>',
            self.summary(),
            '<div class="body">',
            f'<div class="question"><span class="label">question</span>{_e(t.question or "–")}</div>',
            f'<div class="refs"><span class="label">references</span><ul>{references}</ul></div>',
            self.images(inputs),
        ]
        if t.messages:
            messages = "".join(self.message(m) for m in t.messages)
            summary = f"<summary>prompt ({len(t.messages)} messages)</summary>"
            parts.append(f'<details class="prompt">{summary}{messages}</details>')
        parts.extend(self.turn(turn) for turn in t.turns)
        left = [record.index for record in t.images if record.index not in self.shown]
        if left:
            parts.append(f'<div class="leftover"><span class="label">other images</span>{self.images(left)}</div>')
        parts.append(self.block("error", t.error))
        parts.append(self.facts())
        if t.metadata:
            metadata = json.dumps(t.metadata, indent=1, default=str)
            parts.append(f"<details><summary>metadata</summary><pre>{_e(metadata)}</pre></details>")
        parts.append("</div></details>")
        return "".join(parts)


def _options(select_id: str, label: str, counts: Counter[str], empty_name: str) -> str:
    """A filter ``<select>``; values carry a ``=`` prefix so that an empty name stays distinct from "all"."""
    options = [f'<option value="">all ({sum(counts.values())})</option>']
    for name, count in sorted(counts.items()):
        options.append(f'<option value="={_e(name)}">{_e(name or empty_name)} ({count})</option>')
    return f'<label>{label} <select id="{select_id}">{"".join(options)}</select></label>'


def _header(collection: Collection) -> str:
    trajectories = [item.trajectory for item in collection.loaded]
    outcomes = Counter(outcome_of(t) for t in trajectories)
    judged = outcomes["correct"] + outcomes["incorrect"]
    rewards = [r for r in (_reward(t) for t in trajectories) if r is not None]
    stats = [f"{len(trajectories)} trajectories"]
    if judged:
        stats.append(f"accuracy {outcomes['correct'] / judged:.1%} of {judged} scored")
    if rewards:
        stats.append(f"mean reward {sum(rewards) / len(rewards):.3g}")
    tokens = sum(t.usage.prompt_tokens + t.usage.completion_tokens for t in trajectories)
    stats.append(f"{tokens} tokens")
    boxes = "".join(
        f'<label class="badge-label"><input type="checkbox" name="outcome" value="{o}" checked>'
        f'<span class="badge {o}">{_OUTCOME_MARK[o]}</span> {o} ({outcomes[o]})</label>'
        for o in OUTCOMES
    )
    return (
        f'<header><h1>codevision trajectories</h1><p class="stats">{_e(" · ".join(stats))}</p>'
        f'<div class="filters">{boxes}'
        f"{_options('f-stop', 'stop reason', Counter(t.stop_reason for t in trajectories), '(none)')}"
        f"{_options('f-source', 'benchmark', Counter(t.source for t in trajectories), '(no source)')}"
        '<label>search <input type="search" id="f-search" placeholder="words in any text"></label>'
        f'<span class="count"><b id="visible-count">{len(trajectories)}</b> of {len(trajectories)} shown</span>'
        '<button type="button" id="expand-all">expand all</button>'
        '<button type="button" id="collapse-all">collapse all</button></div></header>'
    )


def _failures(collection: Collection) -> str:
    if not collection.failures:
        return ""
    items = "".join(
        f"<li><code>{_e(failure.path)}</code><pre>{_e(failure.reason)}</pre></li>" for failure in collection.failures
    )
    return f'<section id="failures"><h2>could not load ({len(collection.failures)})</h2><ul>{items}</ul></section>'


def render_page(collection: Collection) -> str:
    """The whole page as a string: header with filters, failures, then one collapsible block per trajectory."""
    script = _static("viewer.js")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    policy = (
        f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; "
        "base-uri 'none'; form-action 'none'"
    )
    style = _static("viewer.css") + _FORMATTER.get_style_defs(".code")
    # Decoding, downscaling and encoding images is most of the work, and Pillow does it without the GIL.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        jobs = [
            {r.index: pool.submit(load_embedded, item.path.parent, r.file) for r in item.trajectory.images if r.file}
            for item in collection.loaded
        ]
        renderers = [_TrajectoryRenderer(item, images) for item, images in zip(collection.loaded, jobs, strict=True)]
        # A page of one trajectory opens it; a page of many starts as a list to filter.
        body = "".join(renderer.render(expanded=len(renderers) == 1) for renderer in renderers)
    count = len(collection.loaded)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(policy)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>codevision · {count} trajectories</title><style>{style}</style></head><body>"
        f"{_header(collection)}{_failures(collection)}"
        f'<main id="trajectories">{body}</main>'
        '<p id="no-match" hidden>No trajectory matches the filters.</p>'
        f"<script>{script}</script></body></html>\n"
    )


def write_page(collection: Collection, out: Path) -> Path:
    """Write the page for an already collected set of trajectories; returns ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_page(collection), encoding="utf-8")
    return out


def write_viewer(paths: list[Path], out: Path) -> Path:
    """Find every trajectory under ``paths`` (files or folders, any depth) and write one self-contained page.

    Trajectories that cannot be loaded are listed on the page with the reason. Raises
    :class:`NoTrajectoriesFound` when the paths hold nothing at all to show.
    """
    collection = collect(paths)
    if not collection.loaded and not collection.failures:
        raise NoTrajectoriesFound(f"no {TRAJECTORY_FILE} under {', '.join(map(str, paths))}")
    return write_page(collection, out)


def _lineage_note(record: ImageRecord) -> str:
    """What a tool image shows of its input, or why rewards do not believe its trace."""
    lineage = record.lineage
    if record.origin == "input" or lineage is None:
        return ""
    if not lineage.verified:
        return f" · not verified ({lineage.status}): {lineage.reason or 'no reason recorded'}"
    box = "[" + ", ".join(f"{v:.0f}" for v in lineage.box) + "]" if lineage.box else "nothing"
    turn = f", turned {lineage.angle:g}°" if lineage.angle else ""
    mirror = ", mirrored" if lineage.mirrored else ""
    return f" · shows {box} of input {lineage.input}{turn}{mirror}"
