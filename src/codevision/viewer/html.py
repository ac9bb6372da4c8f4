"""Trajectories as HTML, turn by turn: text, code, outputs, images, op traces.

Everything is rendered here, in Python, as escaped HTML. Model output, sandbox output and
benchmark text are untrusted, so every string goes through :func:`html.escape`; the page's
Content-Security-Policy (see :mod:`codevision.viewer.page`) makes sure that text which escaped
escaping still could not run. Each trajectory renders as a summary line (what the filters and the
list show) and a body (everything else), so a page can carry the bodies or fetch them on demand.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from html import escape
from typing import Literal

from PIL import Image
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

from codevision.sandbox.results import ImageOp, ImageRef
from codevision.trajectory import Action, ImageRecord, Message, ToolOutcome, Trajectory, Turn
from codevision.viewer.collect import LoadedTrajectory
from codevision.viewer.images import ShownImage

Outcome = Literal["correct", "incorrect", "unknown"]
OUTCOMES: tuple[Outcome, ...] = ("correct", "incorrect", "unknown")
OUTCOME_MARK = {"correct": "✓", "incorrect": "✗", "unknown": "?"}

_FORMATTER = HtmlFormatter(cssclass="code", wrapcode=True)
_LEXER = PythonLexer()
_THINK = re.compile(r"<think>(.*?)(?:</think>|\Z)", re.DOTALL)
_THINK_CLOSE = "</think>"
_PREVIEW_CHARS = 100


def esc(value: object) -> str:
    """Escape for element content and double-quoted attributes alike."""
    return escape(str(value), quote=True)


def code_style() -> str:
    """The style sheet of highlighted code cells."""
    return _FORMATTER.get_style_defs(".code")


def outcome_of(trajectory: Trajectory) -> Outcome:
    """``correct``/``incorrect`` when the score says so with a boolean, else ``unknown``."""
    correct = (trajectory.score or {}).get("correct")
    if isinstance(correct, bool):
        return "correct" if correct else "incorrect"
    return "unknown"


def reward_of(trajectory: Trajectory) -> float | None:
    """The score's numeric reward; ``None`` when there is none (a boolean is a verdict, not a reward)."""
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
    return f'<div class="say">{esc(text)}</div>'


def _thinking(text: str) -> str:
    return f'<div class="think"><span class="label">thinking</span>{esc(text)}</div>'


class TrajectoryRenderer:
    """Renders one trajectory; remembers which images were shown so each is shown once.

    ``prepared`` holds the images being prepared in the background (embedded or written as
    files), by index, for every image that has a file.
    """

    def __init__(self, loaded: LoadedTrajectory, prepared: dict[int, Future[ShownImage]]) -> None:
        self.loaded = loaded
        self.trajectory = loaded.trajectory
        self.prepared = prepared
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
        if index not in self.prepared:
            return self._missing(index, caption, "never saved with the trajectory")
        try:
            shown = self.prepared[index].result()
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            return self._missing(index, caption, str(exc) or type(exc).__name__)
        full = "" if shown.full is None else f' data-full="{esc(shown.full)}" title="click for the full image"'
        return (
            f'<figure class="shot" data-index="{index}"><img src="{esc(shown.src)}" alt="image #{index}" '
            f'width="{shown.width}" height="{shown.height}" loading="lazy" decoding="async"{full}>'
            f"<figcaption>{esc(caption)}</figcaption></figure>"
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
            f'<figure class="shot missing" data-index="{index}"><div>image could not be shown: {esc(reason)}</div>'
            f"<figcaption>{esc(caption)}</figcaption></figure>"
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
        return f'<div class="msg"><span class="role">{esc(message.role)}</span>{"".join(body)}</div>'

    @staticmethod
    def block(kind: str, text: str | None) -> str:
        if not text:
            return ""
        return f'<div class="out {kind}"><span class="label">{kind}</span><pre>{esc(text)}</pre></div>'

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
        return esc(text)

    def ops(self, ops: list[ImageOp]) -> str:
        if not ops:
            return ""
        rows = []
        for number, op in enumerate(ops):
            args = ", ".join(f"{key}={json.dumps(value)}" for key, value in op.args.items() if value is not None)
            rows.append(
                f'<tr><td>{number}</td><td title="{esc(op.call)}">{esc(op.name)}</td><td>{esc(args)}</td>'
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
            body = f'<div class="say">crop image #{esc(action.image_index)} to {esc(json.dumps(action.bbox))}</div>'
        return f'<div class="action"><span class="label">action {number} · {esc(action.kind)}</span>{body}</div>'

    def outcome(self, outcome: ToolOutcome) -> str:
        parts = [
            f'<div class="outcome status-{esc(outcome.status)}"><span class="label">result of action {outcome.action}'
            f" · {esc(outcome.status)} · {_seconds(outcome.seconds)}</span>",
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
            f'<section class="turn"><h3>turn {turn.index} <small>{esc(" · ".join(facts))}</small></h3>',
            *self._text_and_actions(turn),
        ]
        if turn.answer is not None:
            parts.append(f'<div class="answer"><span class="label">answer</span>{esc(turn.answer)}</div>')
        if turn.issues:
            items = "".join(f"<li>{esc(issue)}</li>" for issue in turn.issues)
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
        reward = reward_of(t)
        answer = t.final_answer if t.final_answer is not None else "(no answer)"
        preview = answer if len(answer) <= _PREVIEW_CHARS else answer[:_PREVIEW_CHARS] + "…"
        cells = [
            f'<span class="badge {outcome}" title="{outcome}">{OUTCOME_MARK[outcome]}</span>',
            f'<span class="id">{esc(t.task_id)}</span>',
            f'<span class="tag">{esc(t.source or "(no source)")}</span>',
        ]
        if self.loaded.transform:
            cells.append(f'<span class="tag transform">transform {esc(self.loaded.transform)}</span>')
        if self.loaded.run:
            cells.append(f'<span class="tag run">run {esc(self.loaded.run)}</span>')
        cells += [
            f'<span class="tag">{esc(t.stop_reason)}</span>',
            f'<span class="tag">{len(t.turns)} turn{"" if len(t.turns) == 1 else "s"}</span>',
        ]
        if reward is not None:
            cells.append(f'<span class="tag">reward {reward:g}</span>')
        cells.append(f'<span class="preview">{esc(preview)}</span>')
        return f"<summary>{''.join(cells)}</summary>"

    def facts(self) -> str:
        t = self.trajectory
        outcome = outcome_of(t)
        reward = reward_of(t)
        rows: list[tuple[str, str]] = [
            ("final answer", "–" if t.final_answer is None else t.final_answer),
            ("outcome", outcome + ("" if reward is None else f", reward {reward:g}")),
            ("stop reason", t.stop_reason),
            ("tokens", f"{t.usage.prompt_tokens} prompt + {t.usage.completion_tokens} completion"),
            ("time", _seconds(t.seconds)),
            ("model", t.model or "–"),
            ("protocol", t.protocol),
            ("benchmark", t.source or "–"),
            ("transform", self.loaded.transform or "–"),
            ("run", self.loaded.run or "–"),
            ("file", str(self.loaded.path)),
        ]
        other_scores = {k: v for k, v in (t.score or {}).items() if k not in ("correct", "reward")}
        if other_scores:
            rows.append(("score", json.dumps(other_scores, default=str)))
        body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
        return f'<table class="facts">{body}</table>'

    def attributes(self) -> str:
        """The data the page's filters read, as attributes of the trajectory's element."""
        t = self.trajectory
        values = {
            "outcome": outcome_of(t),
            "stop": t.stop_reason,
            "source": t.source,
            "transform": self.loaded.transform,
            "run": self.loaded.run,
        }
        return "".join(f' data-{name}="{esc(value)}"' for name, value in values.items())

    def body(self) -> str:
        """Everything but the summary: question, prompt, turns, images left over, facts and metadata."""
        t = self.trajectory
        inputs = [record.index for record in t.images if record.origin == "input"]
        references = "".join(f"<li>{esc(r)}</li>" for r in t.references) or "<li>–</li>"
        parts = [
            f'<div class="question"><span class="label">question</span>{esc(t.question or "–")}</div>',
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
            parts.append(f"<details><summary>metadata</summary><pre>{esc(metadata)}</pre></details>")
        return "".join(parts)


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
