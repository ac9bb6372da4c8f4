"""codevision's verdicts on the parity sets, and their agreement with the official scripts' labels.

The sets (``bench/parity/sets/*.jsonl``, made by ``bench/parity/make_sets.py`` and labelled by
``bench/parity/label.py``) hold model replies with the official verdict on the whole reply
(``official["strict"]``) and on the reply's answer span (``official["default"]``). Here each row is
scored by codevision from the whole reply in either mode, through the public entry points, with a
judge that replays the row's recorded judge or extractor reply, so the comparison covers answer
cutting, rules and the reading of judge replies alike. Both the agreement test and
``bench/parity/agreement.py`` use this module.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from codevision.policies.openai import OpenAIPolicy
from codevision.scoring import LLMJudge, Mode, ScoringOptions, score, score_with_judge
from codevision.scoring.prompt_file import OfficialPrompts, PromptTemplate

Row = dict[str, Any]

#: Stand-ins for the user's official prompts: the judge's replies are recorded, so only the form matters.
PARITY_PROMPTS = OfficialPrompts(
    Path("parity-prompts.yaml"),
    "",
    MappingProxyType(
        {
            "hrbench": PromptTemplate("{question}\n{options}\nCorrect: {reference}\nAnswer: {response}\nyes or no?"),
            "mathvista": PromptTemplate("{query}\n\n{response}\n\nExtracted answer: "),
        }
    ),
)


class RecordedJudge(LLMJudge):
    """A judge whose every reply is :attr:`reply`, through the real prompt building and reply reading."""

    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:9/v1", "recorded")
        self.reply = ""

    async def _request(self, policy: OpenAIPolicy, messages: Sequence[Mapping[str, str]]) -> str:
        self.requests += 1
        return self.reply


def options_for(row: Row, mode: Mode) -> ScoringOptions:
    quick = bool(row.get("item", {}).get("quick_extract", False))
    prompts = PARITY_PROMPTS if mode == "strict-official" else None
    return ScoringOptions(mode, mathvista_quick_extract=quick, official_prompts=prompts)


def _by_rule(benchmark: str, reading: Callable[[Any], Any]) -> Callable[[Row, Mode, RecordedJudge], Any]:
    async def verdict(row: Row, mode: Mode, judge: RecordedJudge) -> Any:
        result = score(
            benchmark, row["reply"], row["references"], scoring_options=options_for(row, mode), **row["item"]
        )
        return reading(result)

    return verdict


def _extraction(result: Any) -> str | None:
    return None if result.needs_judge else result.details["extraction"]


async def _normalised(row: Row, mode: Mode, judge: RecordedJudge) -> dict[str, Any]:
    options = options_for(row, mode)
    given = {**row["item"], "extraction": row["extraction"]}
    result = score("mathvista", "", row["references"], scoring_options=options, **given)
    return {"prediction": result.details["normalised"], "correct": result.correct}


def _judged(benchmark: str, reply_field: str) -> Callable[[Row, Mode, RecordedJudge], Any]:
    async def verdict(row: Row, mode: Mode, judge: RecordedJudge) -> bool:
        judge.reply = row[reply_field]
        options = options_for(row, mode)
        result = await score_with_judge(
            benchmark, row["reply"], row["references"], judge=judge, scoring_options=options, **row["item"]
        )
        return result.correct

    return verdict


#: How codevision's verdict on a row of each set is made.
VERDICTS: dict[str, Callable[[Row, Mode, RecordedJudge], Any]] = {
    "ocrbench": _by_rule("ocrbench", lambda result: result.correct),
    "mathvista-extract": _by_rule("mathvista", _extraction),
    "mathvista-normalise": _normalised,
    "mathvista-judge": _judged("mathvista", "extractor_reply"),
    "chartqa": _by_rule("chartqa", lambda result: result.correct),
    "anls": _by_rule("anls", lambda result: result.value),
    "vstar": _by_rule("vstar", lambda result: result.correct),
    "hrbench-letter": _by_rule("hrbench", lambda result: result.correct),
    "hrbench-judge": _judged("hrbench", "judge_reply"),
}
MODES: tuple[Mode, ...] = ("strict-official", "default")


def official_label(row: Row, mode: Mode) -> Any:
    """The official verdict the row's codevision verdict is compared with in ``mode``."""
    labels = row["official"]
    if "strict" not in labels:
        return labels  # the normalisation set: one verdict for both modes
    return labels["strict" if mode == "strict-official" else "default"]


def same(ours: Any, theirs: Any) -> bool:
    """Equal verdicts; ANLS values within rounding."""
    if isinstance(ours, float) and isinstance(theirs, float):
        return math.isclose(ours, theirs, abs_tol=1e-9)
    return bool(ours == theirs)


@dataclass
class Agreement:
    """One set in one mode: rows, agreeing rows, and the disagreements by difference tag."""

    name: str
    mode: Mode
    n: int = 0
    agree: int = 0
    by_tag: Counter[str] = field(default_factory=Counter)
    untagged: list[Row] = field(default_factory=list)

    @property
    def percent(self) -> float:
        return 100.0 * self.agree / self.n if self.n else math.nan


def load_set(directory: Path, name: str) -> list[Row]:
    lines = (directory / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line]


def agreement(name: str, rows: Iterable[Row], mode: Mode) -> Agreement:
    """Compare codevision's verdicts on ``rows`` of set ``name`` with the official labels in ``mode``.

    A disagreement counts under its row's ``difference`` tag in the default mode; in strict-official
    mode, and for untagged rows, it is listed in ``untagged`` with both verdicts.
    """
    judge = RecordedJudge()
    verdict = VERDICTS[name]
    result = Agreement(name, mode)

    async def run_all() -> None:
        async with judge:
            for row in rows:
                ours, theirs = await verdict(row, mode, judge), official_label(row, mode)
                result.n += 1
                if same(ours, theirs):
                    result.agree += 1
                elif mode == "default" and row.get("difference"):
                    result.by_tag[row["difference"]] += 1
                else:
                    result.untagged.append({**row, "codevision": ours, "expected": theirs})

    asyncio.run(run_all())
    return result
