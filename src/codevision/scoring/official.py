"""Strict-official scoring: each benchmark's released script applied to the *whole* reply, quirks included.

The default rules (:mod:`codevision.scoring.rules`) first cut the reply to its final answer span and
keep the released scripts' bugs out. Someone who must reproduce a published number needs the
opposite: the script as it ran, reading the whole reply. The rules here do that, and port the
readers the default mode deliberately does not use:

- V* as lmms-eval scores it (``lmms_eval/tasks/vstar_bench/utils.py``): :func:`lmms_eval_letter`.
- HR-Bench's letter prefetch, VLMEvalKit's ``can_infer`` as vendored in the HR-Bench release
  (``vlmeval/utils/matching_util.py``): :func:`vlmevalkit_letter`; and the release's reading of its
  judge, ``^(yes|no)`` on the lower-cased reply: :func:`hrbench_judge_says_yes`.
- MathVista's extractor reply as ``extract_answer.py`` uses it, stripped and nothing more:
  :func:`extractor_answer`.
- CodeVision's reading of its judge's reply (``verl/utils/reward_score/llmjudge.py``):
  :func:`codevision_judge_says_correct`. Its answer rule has no other form: it is
  :func:`codevision.scoring.rules.codevision` in both modes.

The list of differences between the two modes, and why the default makes each, is in
``docs/benchmarks.md``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence

from codevision.scoring import rules
from codevision.scoring.base import References, Score, as_references, as_text

# ------------------------------------------------------------------------------------- V*, lmms-eval
# Tried in order on the stripped, upper-cased reply; the first that matches anywhere gives the letter.
_LMMS_EVAL_PATTERNS = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        r"^([A-D])\s*[\.)\]]*",
        r"(?:THE\s+)?(?:ANSWER|CHOICE|OPTION)(?:\s+IS)?[\s:]+([A-D])",
        r"\(([A-D])\)",
        r"([A-D])\s*(?:\.|\)|])",
        r"(?:^|\s)([A-D])(?:\s|$)",
    )
)


def lmms_eval_letter(reply: object) -> str | None:
    """The letter lmms-eval's V* task reads out of a reply, or None.

    The reply is stripped and upper-cased, then five patterns are tried in turn: a letter A-D that
    opens the reply, a letter after "answer"/"choice"/"option" (and "is"), a parenthesised letter,
    a letter before ".", ")" or "]", a letter standing alone. Failing those, the only A-D letter of
    the reply, else its first character if that is one. None of the patterns looks at word
    boundaries, which is why "Based on the image" reads as B and "red" as D; the letters are always
    A-D, whatever the number of options.
    """
    text = as_text(reply).strip().upper()
    for pattern in _LMMS_EVAL_PATTERNS:
        found = pattern.search(text)
        if found:
            return found.group(1).upper()
    letters = re.findall(r"[A-D]", text)
    if len(letters) == 1:
        return letters[0]
    return text[0] if text and text[0] in "ABCD" else None


def vstar(prediction: object, references: References, *, choices: rules.Options = None) -> Score:
    """V* as lmms-eval scores it: :func:`lmms_eval_letter` of the whole reply must equal the key's letter."""
    texts = rules.option_list(choices)
    keys = {rules.reference_letter(reference, texts) for reference in as_references(references)}
    if not keys:
        raise ValueError("V* needs the correct option's letter or text")
    answer = as_text(prediction)
    letter = lmms_eval_letter(answer)
    return Score.of(letter in keys, "vstar", answer=answer, letter=letter, key=min(keys))


# ---------------------------------------------------------------------------- HR-Bench, VLMEvalKit
_API_FAILURE = "Failed to obtain answer via API"
# Replies VLMEvalKit maps to the "no option" letter Z.
_REFUSALS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
_TOKEN_BREAKS = str.maketrans(dict.fromkeys(".()[],:;!*#{}", " "))


def vlmevalkit_letter(reply: object, options: Mapping[str, str]) -> str | None:
    """The letter VLMEvalKit's ``can_infer`` reads out of a reply: an option letter, "Z" or None.

    First by letter: a known refusal gives Z; otherwise, with ``.()[],:;!*#{}`` turned into spaces,
    the reply's whitespace-separated tokens are searched for the option letters, and exactly one
    distinct letter among them is the answer (an article "A" counts as a letter); with none, a
    token "Z" gives Z. When that decides nothing, by text: the one option whose lower-cased text is
    a substring of the lower-cased reply (so "red" is found in "bored"). A reply reporting an API
    failure skips the letter step. ``options`` maps letters to texts.
    """
    text = as_text(reply)
    by_letter = None if _API_FAILURE in text else _letter_token(text, options)
    return by_letter or _option_substring(text, options)


def _letter_token(text: str, options: Mapping[str, str]) -> str | None:
    if any(refusal in text for refusal in _REFUSALS):
        return "Z"
    tokens = text.translate(_TOKEN_BREAKS).split()
    named = [letter for letter in options if letter in tokens]
    if len(named) == 1:
        return named[0]
    return "Z" if not named and "Z" in tokens else None


def _option_substring(text: str, options: Mapping[str, str]) -> str | None:
    lowered = text.lower()
    found = [letter for letter, option in options.items() if as_text(option).lower() in lowered]
    return found[0] if len(found) == 1 else None


def lettered_options(choices: rules.Options) -> dict[str, str]:
    """The options by letter, in letter order, as HR-Bench's columns hold them."""
    return dict(zip(string.ascii_uppercase, rules.option_list(choices), strict=False))


def hrbench(prediction: object, references: References, *, choices: rules.Options = None) -> Score:
    """HR-Bench with the whole reply: :func:`vlmevalkit_letter` as the provisional letter, then the judge.

    The release judges every item, so ``needs_judge`` is always set; the letter stands in only
    while no judge has answered.
    """
    options = lettered_options(choices)
    texts = list(options.values())
    keys = {rules.reference_letter(reference, texts) for reference in as_references(references)}
    if not keys:
        raise ValueError("HR-Bench needs the correct option's letter or text")
    answer = as_text(prediction)
    letter = vlmevalkit_letter(answer, options)
    return Score.of(letter in keys, "hrbench", needs_judge=True, answer=answer, letter=letter, key=min(keys))


def hrbench_judge_says_yes(reply: object) -> bool:
    """The HR-Bench release's reading of its judge: yes iff the lower-cased reply *starts* with "yes".

    So "Yesterday" and "yes, but no" count as yes; "**Yes**", " yes", "1" and anything unreadable
    count as no.
    """
    return as_text(reply).lower().startswith("yes")


# ---------------------------------------------------------------------------------- CodeVision
_CODEVISION_JUDGE_PREFIXES = ("judgment:", "judgement:", "verdict:", "answer:", "response:")
_CODEVISION_JUDGE_YES = frozenset({"1", "1.0", "yes", "correct", "true", "right"})
_CODEVISION_JUDGE_NO = frozenset({"0", "0.0", "no", "incorrect", "false", "wrong"})
# Searched in this order; the first that matches anywhere gives the score.
_CODEVISION_JUDGE_PATTERNS = tuple(
    re.compile(pattern)
    for pattern in (r"\b(1)\b(?![\d.])", r"\b(0)\b(?![\d.])", r"score[:\s]*([01])", r"([01])[\s]*(?:out of|/)\s*1")
)


def codevision_judge_says_correct(reply: object) -> bool:
    """CodeVision's reading of its judge (``LLMJudgeClient._parse_score`` at e098588), quirks included.

    The lower-cased, stripped reply loses each of "judgment:", "judgement:", "verdict:", "answer:",
    "response:" in that order when it starts with it; then a reply that is exactly 1/0 (or 1.0/0.0) or
    a verdict word decides; else the first stand-alone 1 anywhere, then the first stand-alone 0, then
    "score: 1" or "1 out of 1". So "0/1" and "0 out of 1" read as correct, while "1." (a digit
    followed by a full stop) and anything unreadable read as incorrect.
    """
    text = as_text(reply).strip().lower()
    for prefix in _CODEVISION_JUDGE_PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix) :].strip()
    if text in _CODEVISION_JUDGE_YES or text in _CODEVISION_JUDGE_NO:
        return text in _CODEVISION_JUDGE_YES
    for pattern in _CODEVISION_JUDGE_PATTERNS:
        found = pattern.search(text)
        if found:
            return found.group(1) == "1"
    return False


# ---------------------------------------------------------------------------------------- MathVista
def extractor_answer(reply: object) -> str | None:
    """MathVista's extraction as ``extract_answer.py`` keeps the extractor's reply: stripped, nothing more.

    Labels, quotes and explanation stay and go on to normalisation, and a reply of only white space
    extracts as empty. An empty reply is None: the release asks again until the reply is not empty.
    """
    text = as_text(reply)
    return text.strip() if text else None


def mathvista(
    prediction: object,
    references: References,
    *,
    question_type: str,
    answer_type: str,
    choices: Sequence[object] | None = None,
    precision: object = None,
    extraction: str | None = None,
    quick_extract: bool = False,
) -> Score:
    """MathVista with the whole reply as the response: the rule shortcuts, then the extractor."""
    return rules.match_mathvista(
        as_text(prediction),
        references,
        question_type=question_type,
        answer_type=answer_type,
        choices=choices,
        precision=precision,
        extraction=extraction,
        quick_extract=quick_extract,
    )


# ---------------------------------------------------------------------------- OCRBench, ChartQA, ANLS
def ocrbench(prediction: object, references: References, *, dataset_name: str = "") -> Score:
    """OCRBench's substring rule on the whole reply."""
    return rules.match_ocrbench(as_text(prediction), references, dataset_name=dataset_name)


def chartqa(prediction: object, references: References) -> Score:
    """pix2struct's relaxed accuracy on the whole reply, unstripped."""
    return rules.match_chartqa(as_text(prediction), references)


def anls(prediction: object, references: References, *, threshold: float = 0.5) -> Score:
    """The DocVQA/RRC ANLS on the whole reply."""
    return rules.match_anls(as_text(prediction), references, threshold=threshold)
