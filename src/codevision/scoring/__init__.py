"""Scoring: each benchmark's official rule, an LLM judge where the official protocol uses one, aggregation.

``score(benchmark, response, references, **item)`` applies the rule of OCRBench, V*, HR-Bench,
MathVista, ChartQA, ANLS/exact match or CodeVision to one model response and returns a
:class:`Score`; ``await score_with_judge(..., judge=LLMJudge(url, model, cache=path))`` also asks the
judge wherever the official protocol would. :func:`hrbench_accuracy` and :func:`option_order_bias`
turn item scores into the numbers the benchmarks report. ``scoring_options=ScoringOptions(...)``
switches to strict-official scoring (:mod:`codevision.scoring.official`: the whole reply, as each
released script scores it) and sets MathVista's extraction.
"""

from __future__ import annotations

from codevision.scoring.aggregate import (
    ALL,
    HRBenchReport,
    OptionOrderBias,
    ShuffledOptions,
    accuracy,
    hrbench_accuracy,
    option_order_bias,
    shuffle_options,
)
from codevision.scoring.base import References, Score
from codevision.scoring.dispatch import (
    OFFICIAL_RULES,
    RULES,
    BenchmarkRule,
    UnknownBenchmarkError,
    official_prompts_needed,
    rule_for,
    score,
    score_with_judge,
)
from codevision.scoring.extract import final_answer, levenshtein, option_letter
from codevision.scoring.judge import JudgeCache, JudgeError, JudgeRecord, LLMJudge, parse_extraction, parse_verdict
from codevision.scoring.options import MODES, Mode, ScoringOptions
from codevision.scoring.prompt_file import OfficialPrompts, PromptFileError, load_official_prompts
from codevision.scoring.prompts import JUDGE_KINDS, JudgeKind
from codevision.scoring.rules import (
    PARTIAL_CREDIT_RULES,
    anls,
    chartqa,
    codevision,
    codevision_answer,
    exact_match,
    hrbench,
    match_anls,
    match_chartqa,
    match_mathvista,
    match_ocrbench,
    mathvista,
    mathvista_extract,
    mathvista_normalise,
    multiple_choice,
    ocrbench,
    relaxed_correctness,
    vstar,
)

__all__ = [
    "ALL",
    "JUDGE_KINDS",
    "MODES",
    "OFFICIAL_RULES",
    "PARTIAL_CREDIT_RULES",
    "RULES",
    "BenchmarkRule",
    "HRBenchReport",
    "JudgeCache",
    "JudgeError",
    "JudgeKind",
    "JudgeRecord",
    "LLMJudge",
    "Mode",
    "OfficialPrompts",
    "OptionOrderBias",
    "PromptFileError",
    "References",
    "Score",
    "ScoringOptions",
    "ShuffledOptions",
    "UnknownBenchmarkError",
    "accuracy",
    "anls",
    "chartqa",
    "codevision",
    "codevision_answer",
    "exact_match",
    "final_answer",
    "hrbench",
    "hrbench_accuracy",
    "levenshtein",
    "load_official_prompts",
    "match_anls",
    "match_chartqa",
    "match_mathvista",
    "match_ocrbench",
    "mathvista",
    "mathvista_extract",
    "mathvista_normalise",
    "multiple_choice",
    "ocrbench",
    "official_prompts_needed",
    "option_letter",
    "option_order_bias",
    "parse_extraction",
    "parse_verdict",
    "relaxed_correctness",
    "rule_for",
    "score",
    "score_with_judge",
    "shuffle_options",
    "vstar",
]
