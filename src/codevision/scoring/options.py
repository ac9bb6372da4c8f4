"""How replies are scored: the default mode or strict-official, and MathVista's extraction setting.

Every item's score records the mode (``details["mode"]``) and MathVista items the extraction
setting (``details["quick_extract"]``), and a run stores :meth:`ScoringOptions.as_config`, so a
report can say how its numbers were made and a resumed run cannot mix two ways of scoring.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from codevision.scoring.prompt_file import OfficialPrompts, PromptFileError, PromptTemplate, load_official_prompts

Mode = Literal["default", "strict-official"]
MODES: tuple[Mode, ...] = ("default", "strict-official")
_PROMPTS_OUTSIDE_STRICT = "official prompts are used only in strict-official scoring (--strict-official)"


@dataclass(frozen=True)
class ScoringOptions:
    """``mode``: ``"default"`` scores the final answer span with the official rules' bugs kept out;
    ``"strict-official"`` scores the whole reply exactly as each released script does.

    ``mathvista_quick_extract`` switches on MathVista's ``The answer is "X".`` regex before the LLM
    extractor, as the script's ``--quick_extract`` does; off by default, as in the release, whose
    published numbers were extracted by the LLM. ``official_prompts`` are the user's copies of the
    official judge prompts, used in strict-official mode only.
    """

    mode: Mode = "default"
    mathvista_quick_extract: bool = False
    official_prompts: OfficialPrompts | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"scoring mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.official_prompts is not None and self.mode != "strict-official":
            raise ValueError(_PROMPTS_OUTSIDE_STRICT)

    @classmethod
    def of(
        cls,
        *,
        strict_official: bool = False,
        official_prompts: str | Path | OfficialPrompts | None = None,
        mathvista_quick_extract: bool = False,
    ) -> ScoringOptions:
        """Options from plain settings; a prompts file given by path is read and checked now."""
        if official_prompts is not None and not strict_official:
            raise ValueError(_PROMPTS_OUTSIDE_STRICT)
        prompts = official_prompts
        if prompts is not None and not isinstance(prompts, OfficialPrompts):
            prompts = load_official_prompts(prompts)
        return cls("strict-official" if strict_official else "default", mathvista_quick_extract, prompts)

    @property
    def strict(self) -> bool:
        return self.mode == "strict-official"

    def prompt_for(self, benchmark: str) -> PromptTemplate:
        """The official prompt for ``benchmark``; :class:`PromptFileError` when none was given."""
        if self.official_prompts is None:
            raise PromptFileError(
                f"strict-official scoring of {benchmark} asks the judge with the official prompt, which is not "
                "shipped: give it in a YAML file (--official-prompts FILE, see docs/benchmarks.md)"
            )
        return self.official_prompts.template(benchmark)

    def check_prompts(self, benchmarks: Iterable[str]) -> None:
        """Fail now, not at the first judged item, when strict-official mode lacks a prompt it will need.

        ``benchmarks`` are the rules whose strict-official scoring asks the judge
        (:func:`~codevision.scoring.dispatch.official_prompts_needed`).
        """
        if self.strict:
            for benchmark in sorted(set(benchmarks)):
                self.prompt_for(benchmark)

    def as_config(self) -> dict[str, Any]:
        """The settings as a run's config stores them; the prompts file by path and content hash."""
        prompts = self.official_prompts
        return {
            "mode": self.mode,
            "mathvista_quick_extract": self.mathvista_quick_extract,
            "official_prompts": None if prompts is None else {"path": str(prompts.path), "sha256": prompts.sha256},
        }


DEFAULT_OPTIONS = ScoringOptions()
