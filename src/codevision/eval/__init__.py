"""Evaluation: run benchmarks through the agent, score them, and report accuracy and robustness."""

from __future__ import annotations

from codevision.eval.compare import compare
from codevision.eval.report import build_report, write_report
from codevision.eval.runner import EvalItem, RunStopped, evaluate
from codevision.eval.store import ResultStore

__all__ = ["EvalItem", "ResultStore", "RunStopped", "build_report", "compare", "evaluate", "write_report"]
