"""Reading the answer out of a model's response: the final-answer span, option letters, edit distance.

Every function takes any input (``None``, numbers, unbalanced tags, megabytes of text) and returns a
value rather than raising, because a scorer that crashes on one malformed response loses a whole
evaluation run.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

from codevision.protocols.answers import extract_answer
from codevision.scoring.base import as_text

# Text that is never the model's answer: tool output quoted back, and closed reasoning blocks.
_NOT_ANSWER = re.compile(r"<tool_response>.*?</tool_response>|<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_ANSWER_TAG = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL | re.IGNORECASE)
# Decoration models put around a bare letter: markdown emphasis, code ticks, quotes.
_DECORATION = "*_`'\"“”‘’ \t\r\n"
_WHOLE_LETTER = re.compile(r"[(\[]?([A-Za-z])[)\]]?[.:)]?")
# "option b", "choice (C)": the word names an option, so a lower-case letter is meant too.
_OPTION_WORD = re.compile(r"\b(?:option|choice)\s*[:#]?\s*[(\[]?([A-Za-z])[)\]]?(?![A-Za-z0-9])", re.IGNORECASE)
# "The answer is B", "Answer: (c)"; a lower-case letter only when it cannot be the article "a".
_ANSWER_WORD = re.compile(
    r"\b(?i:answer)\s*(?:(?i:is)\s*:?|:|=)?\s*"
    r"(?:([A-Z])(?![A-Za-z0-9])|[(\[]([A-Za-z])[)\]]|([a-z])(?=\s*(?:[.,;:!)]|$)))"
)
_LEADING_LETTER = re.compile(r"[(\[]?([A-Z])[)\].:](?:\s|$)")
_PARENTHESISED = re.compile(r"\(([A-Za-z])\)")
_STANDALONE_CAPITAL = re.compile(r"(?<![A-Za-z0-9'])([A-Z])(?![A-Za-z0-9'])")


def final_answer(response: object, *, unbox: bool = True) -> str:
    """The part of ``response`` that states the answer; the whole response when nothing marks one.

    The last ``<answer>…</answer>`` wins (an unclosed one at the end counts), then the last
    ``\\boxed{…}``, as the agent protocols define it; ``<tool_response>`` blocks quoted in the reply
    and closed ``<think>`` blocks never count, so reasoning is not scored as the answer of a reply
    without answer tags (an unclosed ``<think>`` is all there is, and stays). With ``unbox=False``
    a ``\\boxed{}`` inside the answer is kept verbatim and a bare ``\\boxed{}`` is not taken for the
    answer: OCRBench's handwritten-math references themselves contain ``\\boxed { 3 }``, so
    unwrapping it would change the text being matched.
    """
    text = _NOT_ANSWER.sub("", as_text(response))
    if unbox:
        found = extract_answer(text)
        return found if found is not None else text.strip()
    spans = [span for span in (match.group(1).strip() for match in _ANSWER_TAG.finditer(text)) if span]
    return spans[-1] if spans else text.strip()


def option_letter(answer: object, options: Sequence[object] | None = None, *, n_options: int = 4) -> str | None:
    """The option letter ``answer`` chooses ("A", "B", ...), or None when it names none or several.

    Accepted forms, strongest first: a bare letter ("b", "(B)", "**C.**"), exactly one option's
    text, "The answer is B" / "Answer: (c)", "option b" / "choice (C)", a leading "B." / "(B)" /
    "B)", a single distinct parenthesised letter, the text of exactly one option inside a sentence,
    and finally a single distinct stand-alone capital.
    Only the first ``len(options)`` letters (``n_options`` when no options are given) count, so the
    pronoun "I" or the article "A" at a sentence start are not taken for options that do not exist.
    """
    text = as_text(answer).strip()
    count = len(options) if options else n_options
    valid = set(string.ascii_uppercase[: max(0, min(count, 26))])

    def pick(letters: Sequence[str]) -> str | None:
        distinct = {letter.upper() for letter in letters if letter and letter.upper() in valid}
        return distinct.pop() if len(distinct) == 1 else None

    bare = _WHOLE_LETTER.fullmatch(text.strip(_DECORATION))
    if bare and bare.group(1).upper() in valid:
        return bare.group(1).upper()
    texts = [_squash(as_text(option)).strip(".") for option in options or ()][:26]
    wanted = _squash(text).strip(".")
    equal = pick([string.ascii_uppercase[i] for i, option in enumerate(texts) if option and option == wanted])
    if equal is not None:
        return equal
    # An explicit "the answer is D" wins over an option discussed on the way ("option C does not fit").
    for pattern in (_ANSWER_WORD, _OPTION_WORD):
        named = [next(group for group in match.groups() if group) for match in pattern.finditer(text)]
        named = [letter.upper() for letter in named if letter.upper() in valid]
        if named:
            return named[-1]
    leading = _LEADING_LETTER.match(text.lstrip(_DECORATION))
    if leading and leading.group(1) in valid:
        return leading.group(1)
    return (
        pick(_PARENTHESISED.findall(text))
        or _option_contained(wanted, texts)
        or pick(_STANDALONE_CAPITAL.findall(text))
    )


def _option_contained(answer: str, texts: Sequence[str]) -> str | None:
    """The letter of the one option whose text appears in the answer as whole words."""
    found = [i for i, option in enumerate(texts) if option and re.search(rf"(?<!\w){re.escape(option)}(?!\w)", answer)]
    # An option inside a longer one that also appears ("red" in "dark red") is not a second match.
    found = [i for i in found if not any(i != j and texts[i] in texts[j] for j in found)]
    return string.ascii_uppercase[found[0]] if len(found) == 1 else None


def _squash(text: str) -> str:
    return " ".join(text.lower().split())


def levenshtein(first: str, second: str) -> int:
    """The edit distance (insertions, deletions, substitutions, each costing 1) between two strings."""
    if len(first) < len(second):
        first, second = second, first
    previous = list(range(len(second) + 1))
    for row, char in enumerate(first, start=1):
        current = [row]
        for column, other in enumerate(second, start=1):
            current.append(min(previous[column] + 1, current[column - 1] + 1, previous[column - 1] + (char != other)))
        previous = current
    return previous[-1]
