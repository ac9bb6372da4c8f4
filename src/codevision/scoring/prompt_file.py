"""The prompts file of strict-official scoring: the official judge and extractor prompts, supplied by the user.

Strict-official mode asks the judge exactly what the released scripts ask (HR-Bench's yes/no
question, MathVista's few-shot extraction prompt, CodeVision's four verdict prompts, one per kind
of task: ``codevision-ocr``, ``codevision-math``, ``codevision-code``, ``codevision-general``).
Those texts belong to their authors and are not shipped here, so the user writes them into a YAML
file, one mapping per benchmark::

    hrbench:
      template: |-
        ...{question}...{options}...{reference}...{response}...
    mathvista:
      system: optional system message
      template: "...{query}\n\n{response}\n\nExtracted answer: "

``template`` is a Python format string: ``{name}`` is a placeholder, ``{{`` and ``}}`` are literal
braces. ``system``, when given, is sent as the system message; without it the prompt is the only
message, as both releases send it. Every mistake is reported with the file, the benchmark and the
key. YAML, because the reward specifications already are, and its block and quoted strings keep a
long prompt's line breaks and trailing spaces exactly.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import yaml

from codevision.scoring.rules import CODEVISION_JUDGE_PROMPTS

#: The placeholders each benchmark's template may use, and what they are filled with.
PLACEHOLDERS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "hrbench": {
            "question": "the question as the benchmark states it",
            "options": 'the options, one "A. text" line each',
            "reference": 'the correct option as "B. text"',
            "response": "the model's whole reply",
        },
        "mathvista": {
            "query": "the prompt the model was shown (the item's query)",
            "question": "the question as the benchmark states it",
            "response": "the model's whole reply",
        },
        **{
            f"codevision-{task}": {
                "question": "the row's question (extra_info.question)",
                "reference": "the ground truth",
                "response": "the answer CodeVision's rule read from the response",
            }
            for task in CODEVISION_JUDGE_PROMPTS
        },
    }
)
#: The placeholders a template cannot do without.
REQUIRED: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "hrbench": frozenset({"reference", "response"}),
        "mathvista": frozenset({"response"}),
        **{f"codevision-{task}": frozenset({"reference", "response"}) for task in CODEVISION_JUDGE_PROMPTS},
    }
)
_KEYS = frozenset({"template", "system"})


class PromptFileError(ValueError):
    """A prompts file that cannot be used: unreadable, malformed, or missing a prompt or placeholder."""


@dataclass(frozen=True)
class PromptTemplate:
    """One benchmark's prompt: the template and the optional system message."""

    template: str
    system: str | None = None

    def render(self, **values: str) -> str:
        """The prompt with every placeholder filled (values for unused placeholders are ignored)."""
        return self.template.format(**values)


@dataclass(frozen=True)
class OfficialPrompts:
    """The templates read from one prompts file, by benchmark; ``sha256`` identifies the file's contents."""

    path: Path
    sha256: str
    templates: Mapping[str, PromptTemplate]

    def template(self, benchmark: str) -> PromptTemplate:
        """The template for ``benchmark``; :class:`PromptFileError` when the file has none."""
        found = self.templates.get(benchmark)
        if found is None:
            raise PromptFileError(
                f"{self.path}: no {benchmark!r} prompt; strict-official scoring of {benchmark} asks the judge "
                f"with the benchmark's own prompt (a template with {_names(PLACEHOLDERS[benchmark])})"
            )
        return found


def load_official_prompts(path: str | Path) -> OfficialPrompts:
    """Read and check a prompts file; :class:`PromptFileError` says what is wrong and where."""
    path = Path(path)
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise PromptFileError(f"{path}: cannot read the prompts file ({exc.strerror or exc})") from exc
    try:
        entries = yaml.safe_load(content.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PromptFileError(f"{path}: not a valid UTF-8 YAML file ({exc})") from exc
    if not isinstance(entries, dict) or not entries:
        raise PromptFileError(f"{path}: expected a mapping with one or more of {_benchmarks()}")
    templates = {str(name): _template(path, str(name), entry) for name, entry in entries.items()}
    return OfficialPrompts(path, hashlib.sha256(content).hexdigest(), MappingProxyType(templates))


def _template(path: Path, name: str, entry: object) -> PromptTemplate:
    if name not in PLACEHOLDERS:
        raise PromptFileError(
            f"{path}: unknown benchmark {name!r}; strict-official scoring asks a judge only for {_benchmarks()}"
        )
    if not isinstance(entry, dict):
        raise PromptFileError(f"{path}: {name}: expected a mapping with a 'template' key, not {type(entry).__name__}")
    unknown = ", ".join(sorted(str(key) for key in entry if key not in _KEYS))
    if unknown:
        raise PromptFileError(f"{path}: {name}: unknown key(s) {unknown}; allowed: template, system")
    template, system = entry.get("template"), entry.get("system")
    if not isinstance(template, str) or not template.strip():
        raise PromptFileError(f"{path}: {name}.template: missing or empty; expected the prompt text")
    if system is not None and not isinstance(system, str):
        raise PromptFileError(f"{path}: {name}.system: expected a string, not {type(system).__name__}")
    _check_placeholders(path, name, template)
    return PromptTemplate(template, system)


def _check_placeholders(path: Path, name: str, template: str) -> None:
    where = f"{path}: {name}.template"
    try:
        fields = [(field, spec, conversion) for _, field, spec, conversion in string.Formatter().parse(template)]
    except ValueError as exc:
        raise PromptFileError(f"{where}: {exc}; write {{{{ and }}}} for literal braces") from exc
    used: set[str] = set()
    for field, spec, conversion in fields:
        if field is None:
            continue
        if field not in PLACEHOLDERS[name]:
            raise PromptFileError(
                f"{where}: unknown placeholder {{{field}}}; allowed: {_names(PLACEHOLDERS[name])} "
                "(write {{ and }} for literal braces)"
            )
        if spec or conversion:
            raise PromptFileError(f"{where}: placeholder {{{field}}} takes no conversion or format spec")
        used.add(field)
    missing = sorted(REQUIRED[name] - used)
    if missing:
        raise PromptFileError(f"{where}: missing placeholder(s) {_names(missing)}")


def _names(names: Iterable[str]) -> str:
    return ", ".join(f"{{{name}}}" for name in names)


def _benchmarks() -> str:
    return ", ".join(PLACEHOLDERS)
