"""Scoring: each benchmark's official rule, an LLM judge where the official protocol uses one, aggregation.

``score(benchmark, response, references, **item)`` applies the rule of OCRBench, V*, HR-Bench,
MathVista, ChartQA, ANLS/exact match or CodeVision to one model response and returns a
:class:`Score`; ``await score_with_judge(..., judge=LLMJudge(url, model, cache=path))`` also asks the
judge wherever the official protocol would. :func:`hrbench_accuracy` and :func:`option_order_bias`
turn item scores into the numbers the benchmarks report.
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
    RULES,
    BenchmarkRule,
    UnknownBenchmarkError,
    rule_for,
    score,
    score_with_judge,
)
from codevision.scoring.extract import final_answer, levenshtein, option_letter
from codevision.scoring.judge import JudgeCache, JudgeError, JudgeRecord, LLMJudge, parse_extraction, parse_verdict
from codevision.scoring.prompts import JUDGE_KINDS, JudgeKind
from codevision.scoring.rules import (
    anls,
    chartqa,
    codevision,
    codevision_answer,
    exact_match,
    hrbench,
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
    "RULES",
    "BenchmarkRule",
    "HRBenchReport",
    "JudgeCache",
    "JudgeError",
    "JudgeKind",
    "JudgeRecord",
    "LLMJudge",
    "OptionOrderBias",
    "References",
    "Score",
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
    "mathvista",
    "mathvista_extract",
    "mathvista_normalise",
    "multiple_choice",
    "ocrbench",
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
