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

from codevision.eval.scorer import make_scorer
from codevision.policies.openai import OpenAIPolicy
from codevision.protocols.answers import extract_answer
from codevision.scoring import LLMJudge, Mode, ScoringOptions, score, score_with_judge
from codevision.scoring.prompt_file import OfficialPrompts, PromptTemplate
from codevision.scoring.prompts import VERDICT_TEMPLATES
from codevision.scoring.rules import CODEVISION_JUDGE_PROMPTS
from codevision.task import Task
from codevision.trajectory import Trajectory, Turn

Row = dict[str, Any]

#: Stand-ins for the user's official prompts: the judge's replies are recorded, so only the form matters.
PARITY_PROMPTS = OfficialPrompts(
    Path("parity-prompts.yaml"),
    "",
    MappingProxyType(
        {
            "hrbench": PromptTemplate("{question}\n{options}\nCorrect: {reference}\nAnswer: {response}\nyes or no?"),
            "mathvista": PromptTemplate("{query}\n\n{response}\n\nExtracted answer: "),
            **{
                f"codevision-{task}": PromptTemplate(f"{task} prompt\n{{question}}\n{{reference}}\n{{response}}")
                for task in CODEVISION_JUDGE_PROMPTS
            },
        }
    ),
)


class RecordedJudge(LLMJudge):
    """A judge whose every reply is :attr:`reply`, through the real prompt building and reply reading.

    ``prompts`` holds the user message of every request, so a verdict can say which prompt was asked.
    """

    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:9/v1", "recorded")
        self.reply = ""
        self.prompts: list[str] = []

    async def _request(self, policy: OpenAIPolicy, messages: Sequence[Mapping[str, str]]) -> str:
        self.requests += 1
        self.prompts.append(messages[-1]["content"])
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


def _prompt_kind(prompt: str) -> str:
    """Which prompt a CodeVision judge request used: the parity stand-in's name, or the kind of ours."""
    for task in CODEVISION_JUDGE_PROMPTS:
        if prompt.startswith(f"{task} prompt\n"):
            return task
    return next(kind for kind, template in VERDICT_TEMPLATES.items() if prompt.startswith(template.split("{")[0]))


async def _codevision(row: Row, mode: Mode, judge: RecordedJudge) -> dict[str, Any]:
    """The rollout's turns scored as evaluation and the rewards score them (the eval scorer, on a
    trajectory), so joining the turns is compared too: the score, whether a verdict of the judge
    was used, and with which prompt the judge was asked."""
    judge.reply, judge.prompts = row["judge_reply"], []
    item = row["item"]
    task = Task(
        id=row["id"],
        question=item["question"],
        answers=[row["references"]],
        source="verl",
        metadata={**item, "scoring": "codevision"},
    )
    turns = [Turn(index=index, text=text) for index, text in enumerate(row["turns"])]
    # The final answer as the agent loop records it, so a scorer that read it instead of the turns would show.
    answer = extract_answer(row["turns"][-1])
    trajectory = Trajectory(task_id=row["id"], protocol="codevision", turns=turns, final_answer=answer)
    prompts = PARITY_PROMPTS if mode == "strict-official" else None
    scorer = make_scorer(judge, strict_official=mode == "strict-official", official_prompts=prompts)
    result = await scorer(task, trajectory)
    asked = _prompt_kind(judge.prompts[0]) if judge.prompts else None
    return {"score": float(result["correct"]), "judged": bool(result["judged"]), "judge_prompt": asked}


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
    "codevision": _codevision,
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
