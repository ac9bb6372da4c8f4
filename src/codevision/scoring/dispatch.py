"""One entry point for every benchmark: ``score(name, response, references, **item)``.

Names are matched loosely ("HR-Bench 4K", "hrbench_4k" and "hrbench4k" are the same), and the task
kinds the judge knows (``ocr``, ``math``, ``multiple-choice``, ``general``) name the generic rule
for that kind. Item fields a rule does not use are ignored, so a whole annotation record can be
passed as keywords: ``score("mathvista", response, item["answer"], **item)``. ``scoring_options``
(:class:`~codevision.scoring.options.ScoringOptions`) picks the default or the strict-official
rules and MathVista's extraction setting; every score records the mode in ``details["mode"]``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

from codevision.scoring import official, rules
from codevision.scoring.base import References, Score, as_references, as_text
from codevision.scoring.judge import JudgeRecord, LLMJudge
from codevision.scoring.options import DEFAULT_OPTIONS, Mode, ScoringOptions
from codevision.scoring.prompt_file import PromptTemplate
from codevision.scoring.prompts import JUDGE_KINDS, JudgeKind, format_options

JudgeUse = Literal["verdict", "extract"]
Reads = Literal["answer", "response"]


@dataclass(frozen=True)
class BenchmarkRule:
    """A benchmark's rule, how its official protocol uses a judge, if it does, and what it reads.

    ``reads`` is the part of a trajectory the rule is given: ``answer``, the final answer (the whole
    last reply in strict-official mode), or ``response``, every assistant turn, because CodeVision's
    released scorer reads the whole decoded multi-turn response and finds the answer itself.
    """

    name: str
    rule: Callable[..., Score]
    judge: JudgeUse | None = None
    judge_kind: JudgeKind = "general"
    reads: Reads = "answer"

    def accepts(self) -> frozenset[str]:
        """The item fields the rule takes as keywords."""
        parameters = inspect.signature(self.rule).parameters.values()
        return frozenset(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)


_OCRBENCH = BenchmarkRule("ocrbench", rules.ocrbench)
_MULTIPLE_CHOICE = BenchmarkRule("multiple-choice", rules.multiple_choice, "verdict", "multiple-choice")
_VSTAR = BenchmarkRule("vstar", rules.vstar, "verdict", "multiple-choice")
_HRBENCH = BenchmarkRule("hrbench", rules.hrbench, "verdict", "multiple-choice")
_MATHVISTA = BenchmarkRule("mathvista", rules.mathvista, "extract", "math")
_CHARTQA = BenchmarkRule("chartqa", rules.chartqa)
_ANLS = BenchmarkRule("anls", rules.anls)
_EXACT = BenchmarkRule("exact-match", rules.exact_match)
_CODEVISION = BenchmarkRule("codevision", rules.codevision, "verdict", "general", reads="response")

#: Every accepted name, in the canonical form :func:`canonical_name` produces.
RULES: dict[str, BenchmarkRule] = {
    "ocrbench": _OCRBENCH,
    "ocr": _OCRBENCH,
    "vstar": _VSTAR,
    "vstarbench": _VSTAR,
    "hrbench": _HRBENCH,
    "hrbench4k": _HRBENCH,
    "hrbench8k": _HRBENCH,
    "mathvista": _MATHVISTA,
    "mathvistatestmini": _MATHVISTA,
    "chartqa": _CHARTQA,
    "anls": _ANLS,
    "docvqa": _ANLS,
    "infographicvqa": _ANLS,
    "exactmatch": _EXACT,
    "vqa": _EXACT,
    "general": _EXACT,
    "codevision": _CODEVISION,
    "mvtoolbench": _CODEVISION,
    "math": _CODEVISION,
    "multiplechoice": _MULTIPLE_CHOICE,
    "mcq": _MULTIPLE_CHOICE,
}


#: The strict-official rules, by the name of the default rule they stand in for; rules not listed
#: (exact match, generic multiple choice) have no other official form and serve both modes. CodeVision's
#: answer rule is the same in both; its strict form asks the judge with the release's prompts and
#: reads the reply as the release does.
OFFICIAL_RULES: dict[str, BenchmarkRule] = {
    "codevision": replace(_CODEVISION),  # the same rule; a distinct entry, so its judge is asked officially
    "ocrbench": BenchmarkRule("ocrbench", official.ocrbench),
    "vstar": BenchmarkRule("vstar", official.vstar),
    "hrbench": BenchmarkRule("hrbench", official.hrbench, "verdict", "multiple-choice"),
    "mathvista": BenchmarkRule("mathvista", official.mathvista, "extract", "math"),
    "chartqa": BenchmarkRule("chartqa", official.chartqa),
    "anls": BenchmarkRule("anls", official.anls),
}


class UnknownBenchmarkError(ValueError):
    """A benchmark or task-kind name that no rule is registered for."""


def canonical_name(name: str) -> str:
    """``name`` lower-cased with "*" spelled "star" and everything but letters and digits removed."""
    return re.sub(r"[^a-z0-9]", "", as_text(name).lower().replace("*", "star"))


def rule_for(name: str, mode: Mode = "default") -> BenchmarkRule:
    """The :class:`BenchmarkRule` registered under ``name`` for ``mode``; :class:`UnknownBenchmarkError` if none is."""
    found = RULES.get(canonical_name(name))
    if found is None:
        known = ", ".join(sorted(RULES))
        raise UnknownBenchmarkError(
            f"no scoring rule for {name!r}; known names (case and punctuation ignored): {known}"
        )
    return OFFICIAL_RULES.get(found.name, found) if mode == "strict-official" else found


def official_prompts_needed(names: Iterable[str]) -> list[str]:
    """The official prompts that strict-official scoring of the benchmarks ``names`` may ask the judge with.

    One per benchmark, except CodeVision's, whose release has one prompt per kind of task.
    """
    specs = (rule_for(name, "strict-official") for name in names)
    return sorted({prompt for spec in specs if _official_judge(spec) for prompt in _official_prompt_names(spec)})


def _official_prompt_names(spec: BenchmarkRule) -> tuple[str, ...]:
    if spec.name == "codevision":
        return tuple(f"codevision-{task}" for task in rules.CODEVISION_JUDGE_PROMPTS)
    return (spec.name,)


def _official_prompt_name(spec: BenchmarkRule, meta: dict[str, Any]) -> str:
    """The prompt an item's strict judge request uses: CodeVision's by the row's ``data_source``."""
    if spec.name == "codevision":
        return f"codevision-{rules.codevision_judge_task(meta.get('data_source'))}"
    return spec.name


def _official_judge(spec: BenchmarkRule) -> bool:
    """Whether ``spec`` is a strict-official rule that asks the judge the release's own question."""
    return spec.judge is not None and OFFICIAL_RULES.get(spec.name) is spec


def score(
    benchmark_name: str,
    prediction: object,
    references: References,
    /,
    *,
    scoring_options: ScoringOptions = DEFAULT_OPTIONS,
    **meta: Any,
) -> Score:
    """Score one response with the benchmark's official rule, without a judge.

    Items the official protocol would send to a judge come back with ``needs_judge`` set and the
    rule's provisional verdict; :func:`score_with_judge` resolves them.
    """
    spec = rule_for(benchmark_name, scoring_options.mode)
    accepted = spec.accepts()
    fields = {key: value for key, value in meta.items() if key in accepted}
    if "quick_extract" in accepted:
        fields["quick_extract"] = scoring_options.mathvista_quick_extract
    return spec.rule(prediction, references, **fields).with_details(mode=scoring_options.mode)


async def score_with_judge(
    benchmark_name: str,
    prediction: object,
    references: References,
    /,
    *,
    judge: LLMJudge | None,
    scoring_options: ScoringOptions = DEFAULT_OPTIONS,
    **meta: Any,
) -> Score:
    """:func:`score`, then the judge wherever the official protocol calls for one.

    MathVista's judge extracts the answer, which is then normalised and matched by the rule; the
    others return a verdict that replaces the rule's (rule name suffixed "+judge"). The judge's
    record is kept in ``details["judge"]``. A judge reply that cannot be read leaves the rule's
    provisional score with ``needs_judge`` still set. ``task_kind`` picks the prompt for CodeVision
    items (``ocr``, ``math`` or ``general``); ``question`` is shown to the judge. In strict-official
    mode the judge is asked with the user's official prompt, on the whole reply, and its reply is
    read as the release reads it. A judge server that cannot be reached raises
    :class:`~codevision.scoring.judge.JudgeError`.
    """
    spec = rule_for(benchmark_name, scoring_options.mode)
    result = score(benchmark_name, prediction, references, scoring_options=scoring_options, **meta)
    if judge is None or not result.needs_judge or spec.judge is None:
        return result
    if scoring_options.strict and _official_judge(spec):
        template = scoring_options.prompt_for(_official_prompt_name(spec, meta))
        record = await _ask_officially(spec, result, prediction, references, judge, template, meta)
    else:
        record = await _ask(spec, result, references, judge, meta)
    if record.extraction is not None:
        given = {**meta, "extraction": record.extraction}
        resolved = score(benchmark_name, prediction, references, scoring_options=scoring_options, **given)
        return replace(resolved, rule=f"{resolved.rule}+judge").with_details(judge=record.as_dict())
    if record.verdict is None:
        return result.with_details(judge=record.as_dict())
    return Score.of(record.verdict, f"{result.rule}+judge", **{**result.details, "judge": record.as_dict()})


async def _ask(
    spec: BenchmarkRule, result: Score, references: References, judge: LLMJudge, meta: dict[str, Any]
) -> JudgeRecord:
    """The default mode's judge request: our prompts, on the answer span."""
    question = as_text(meta.get("question"))
    answer = as_text(result.details.get("answer"))
    if spec.judge == "extract":
        return await judge.extract(question=_mathvista_query(question, meta), response=answer)
    options = rules.option_list(meta.get("choices"))
    kind = _judge_kind(spec, meta)
    reference = _reference(result, options, references)
    return await judge.verdict(kind=kind, question=question, reference=reference, response=answer, options=options)


async def _ask_officially(
    spec: BenchmarkRule,
    result: Score,
    prediction: object,
    references: References,
    judge: LLMJudge,
    template: PromptTemplate,
    meta: dict[str, Any],
) -> JudgeRecord:
    """The strict-official judge request: the user's official prompt, read as released.

    The prompt shows the whole reply, except CodeVision's, which shows the answer its rule read.
    """
    question = as_text(meta.get("question"))
    if spec.name == "codevision":
        prompt = template.render(
            question=question,
            reference=" / ".join(as_references(references)),
            response=as_text(result.details.get("answer")),
        )
        record = await judge.complete(prompt, kind="codevision-official", system=template.system)
        return replace(record, verdict=official.codevision_judge_says_correct(record.raw), error=None)
    options = rules.option_list(meta.get("choices"))
    prompt = template.render(
        question=question,
        query=as_text(meta.get("query")) or question,
        options=format_options(options),
        reference=_reference(result, options, references),
        response=as_text(prediction),
    )
    record = await judge.complete(prompt, kind=f"{spec.name}-official", system=template.system)
    if spec.judge == "extract":
        return replace(record, extraction=official.extractor_answer(record.raw))
    return replace(record, verdict=official.hrbench_judge_says_yes(record.raw), error=None)


def _reference(result: Score, options: list[str], references: References) -> str:
    """The correct answer as a judge is shown it: "B. text" for an option, else the references."""
    letter = as_text(result.details.get("key"))
    position = ord(letter) - ord("A") if len(letter) == 1 else -1
    if 0 <= position < len(options):
        return f"{letter}. {options[position]}"
    return letter or " / ".join(as_references(references))


def _judge_kind(spec: BenchmarkRule, meta: dict[str, Any]) -> JudgeKind:
    """The prompt of the default judge: ``task_kind`` when given; for CodeVision rows the kind the release
    picks by ``data_source`` (its code prompt has no counterpart here: the general one grades those)."""
    requested = meta.get("task_kind")
    if requested is None and spec.name == "codevision":
        task = rules.codevision_judge_task(meta.get("data_source"))
        return task if task in ("ocr", "math") else "general"  # type: ignore[return-value]
    if requested is None:
        return spec.judge_kind
    for kind in JUDGE_KINDS:
        if canonical_name(as_text(requested)) == canonical_name(kind):
            return kind
    raise ValueError(f"task_kind must be one of {', '.join(JUDGE_KINDS)}, not {requested!r}")


def _mathvista_query(question: str, meta: dict[str, Any]) -> str:
    """The question as MathVista's extraction prompt shows it: with its choices and the answer format."""
    parts = [question]
    choices = rules.option_list(meta.get("choices"))
    if choices:
        parts.append("Choices:\n" + format_options(choices))
    answer_type, precision = meta.get("answer_type"), meta.get("precision")
    if answer_type == "integer":
        parts.append("Answer with an integer.")
    elif answer_type == "float" and precision is not None:
        parts.append(f"Answer with a decimal number with {int(precision)} decimal place(s).")
    elif answer_type == "list":
        parts.append("Answer with a Python list.")
    return "\n".join(parts)
