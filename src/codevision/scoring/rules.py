"""Each benchmark's official scoring rule, as a pure function of the response and the references.

Every rule takes the model's whole response, reads the answer out of it the way
:func:`~codevision.scoring.extract.final_answer` defines (last ``<answer>``, else ``\\boxed{}``, else
the whole text) and then applies the benchmark's own rule, quirks included, so that numbers are
comparable with published ones. Where our behaviour departs from the released code the docstring
says so and why (the full list is in ``docs/benchmarks.md``). The ``match_*`` functions apply a
rule to an answer already cut out, which is how :mod:`codevision.scoring.official` applies the
same rules to the whole reply in strict-official mode. Rules never raise on a malformed response;
they raise ``ValueError`` only for a reference that cannot be interpreted, which is a data error
worth stopping for.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Literal

from codevision.scoring.base import References, Score, as_references, as_text
from codevision.scoring.extract import final_answer, levenshtein, option_letter

Options = Sequence[object] | Mapping[str, object] | None


# ---------------------------------------------------------------------------------------- OCRBench
def ocrbench(prediction: object, references: References, *, dataset_name: str = "") -> Score:
    """OCRBench v1 on the answer span, which keeps any ``\\boxed{}`` (HME100k references contain it)."""
    return match_ocrbench(final_answer(prediction, unbox=False), references, dataset_name=dataset_name)


def match_ocrbench(answer: str, references: References, *, dataset_name: str = "") -> Score:
    """OCRBench v1 (``OCRBench/example.py``): a reference counts if it is a *substring* of ``answer``.

    For ``dataset_name == "HME100k"`` (handwritten maths) both sides are stripped, newlines become
    spaces and then every space is deleted, so LaTeX spacing does not matter and case does; for
    every other source both are lower-cased and stripped and newlines become spaces. A list of
    references is correct if any one matches. Substring semantics are kept as released: "12" is
    found in "123", and an empty reference matches anything.
    """
    handwritten_math = dataset_name == "HME100k"

    def normalise(text: str) -> str:
        if handwritten_math:
            return text.strip().replace("\n", " ").replace(" ", "")
        return text.lower().strip().replace("\n", " ")

    predicted = normalise(answer)
    matched = next((ref for ref in as_references(references) if normalise(ref) in predicted), None)
    return Score.of(
        matched is not None,
        "ocrbench-hme100k" if handwritten_math else "ocrbench",
        answer=answer,
        normalised=predicted,
        matched=matched,
    )


# ---------------------------------------------------------------------------------- multiple choice
def option_list(options: Options) -> list[str]:
    """Options as texts in letter order; a mapping (HR-Bench's ``A``…``D`` columns) is read by letter."""
    if options is None:
        return []
    if isinstance(options, Mapping):
        letters = sorted(key for key in options if isinstance(key, str) and len(key) == 1 and key.isupper())
        return [as_text(options[letter]) for letter in letters if options[letter] is not None]
    if isinstance(options, str):
        return [options]
    return [as_text(option) for option in options]


def reference_letter(reference: object, options: Sequence[str]) -> str:
    """The correct option's letter, given either the letter or the option's text (V*'s raw format)."""
    text = as_text(reference).strip()
    if len(text) == 1 and text.upper() in string.ascii_uppercase:
        return text.upper()
    if text in options and options.index(text) < 26:
        return string.ascii_uppercase[options.index(text)]
    raise ValueError(f"the reference {text!r} is neither an option letter nor one of the options {options!r}")


def multiple_choice(
    prediction: object, references: References, *, choices: Options = None, n_options: int = 4
) -> Score:
    """Letter matching, as generative harnesses score V* and HR-Bench: the chosen letter must equal the key.

    ``choices`` are the options in the order the model was shown them (a list, or a mapping from
    letters to texts); the reference is the correct letter or the correct option's text. The letter
    is read by :func:`~codevision.scoring.extract.option_letter` ("(B)", "B.", "The answer is B",
    "option b", an option's text). When no letter can be read the score is a provisional
    "incorrect" with ``needs_judge`` set, so a judge may read free-form answers.
    """
    texts = option_list(choices)
    keys = {reference_letter(reference, texts) for reference in as_references(references)}
    if not keys:
        raise ValueError("multiple choice needs the correct option's letter or text")
    answer = final_answer(prediction)
    letter = option_letter(answer, texts or None, n_options=n_options)
    return Score.of(
        letter in keys, "multiple-choice", needs_judge=letter is None, answer=answer, letter=letter, key=min(keys)
    )


def vstar(prediction: object, references: References, *, choices: Options = None) -> Score:
    """V* Bench as lmms-eval and evalscope run it generatively: lettered options, exact letter match.

    V*'s own files list the correct option first; show them shuffled by
    :func:`~codevision.scoring.aggregate.shuffle_options` and pass the shown order as ``choices``
    with the shuffled letter, or the correct option's text, as the reference.
    """
    result = multiple_choice(prediction, references, choices=choices)
    return Score(result.correct, result.value, "vstar", result.details, result.needs_judge)


def hrbench(prediction: object, references: References, *, choices: Options = None) -> Score:
    """HR-Bench: the released evaluation asks an LLM judge "yes"/"no" for *every* item.

    The letter match here is only provisional, so ``needs_judge`` is always set; aggregate with
    :func:`~codevision.scoring.aggregate.hrbench_accuracy`, which averages over the four cycles.
    """
    result = multiple_choice(prediction, references, choices=choices)
    return Score(result.correct, result.value, "hrbench", result.details, needs_judge=True)


# --------------------------------------------------------------------------------------- MathVista
QuestionType = Literal["multi_choice", "free_form"]
AnswerType = Literal["text", "integer", "float", "list"]
_QUICK_EXTRACT = re.compile(r'The answer is "(.*)"\.')


def mathvista_extract(
    response: str,
    *,
    question_type: str,
    answer_type: str,
    choices: Sequence[object] | None = None,
    quick_extract: bool = False,
) -> str | None:
    """MathVista's rule-based extraction (``evaluation/extract_answer.py``); None means "ask the LLM".

    The response is taken as it is when it is one of the choices (multiple choice) or parses as an
    ``int`` (integer answers) or a ``float`` (float answers); these shortcuts run in every setting.
    Only with ``quick_extract`` (the script's ``--quick_extract``, off by default) does the regex
    ``The answer is "(.*)".`` apply next. An empty response extracts as empty, as released.
    """
    if response == "":
        return ""
    if question_type == "multi_choice" and response in [as_text(choice) for choice in choices or ()]:
        return response
    if answer_type == "integer":
        try:
            return str(int(response))
        except ValueError:
            pass
    if answer_type == "float":
        try:
            return str(float(response))
        except ValueError:
            pass
    quick = _QUICK_EXTRACT.search(response) if quick_extract else None
    return quick.group(1) if quick else None


def mathvista_normalise(
    extraction: object,
    *,
    question_type: str,
    answer_type: str,
    choices: Sequence[object] | None = None,
    precision: object = None,
) -> str | None:
    """MathVista's ``normalize_extracted_answer`` (``evaluation/calculate_score.py``).

    Multiple choice: the first "(X)" becomes the letter X; an upper-case letter among the options
    maps to that choice's text, anything else (a lower-case bare letter included, as released) to
    the nearest choice by Levenshtein distance, the first on ties. Integer: ``str(int(float(x)))``,
    which truncates "12.7" to "12". Float: ``str(round(float(x), int(precision)))``, Python's
    rounding of the binary value (``round(2.675, 2) == 2.67``), and None without a precision, as
    released. List: ``str(x)``. None when the text does not parse. Two cases where the released
    code crashes are given an answer instead: an empty choice list yields None, and a free-form
    text answer passes unchanged.
    """
    if question_type == "multi_choice":
        return _nearest_choice(extraction, [as_text(choice) for choice in choices or ()])
    try:
        if answer_type == "integer":
            return str(int(float(extraction)))  # type: ignore[arg-type]
        if answer_type == "float":
            return str(round(float(extraction), int(precision)))  # type: ignore[arg-type,call-overload]
    except (ValueError, TypeError, OverflowError):
        return None
    return str(extraction)


def _nearest_choice(extraction: object, texts: list[str]) -> str | None:
    """The choice a multiple-choice extraction names: by its letter, else the nearest by edit distance."""
    text = extraction.strip() if isinstance(extraction, str) else str(extraction)
    letters = re.findall(r"\(([a-zA-Z])\)", text)
    if letters:
        text = letters[0].upper()
    keys = list(string.ascii_uppercase[: len(texts)])
    if text in keys:
        return texts[keys.index(text)]
    if not texts:
        return None
    distances = [levenshtein(text, choice) for choice in texts]
    return texts[distances.index(min(distances))]


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
    """MathVista testmini on the answer span; see :func:`match_mathvista`."""
    return match_mathvista(
        final_answer(prediction),
        references,
        question_type=question_type,
        answer_type=answer_type,
        choices=choices,
        precision=precision,
        extraction=extraction,
        quick_extract=quick_extract,
    )


def match_mathvista(
    answer: str,
    references: References,
    *,
    question_type: str,
    answer_type: str,
    choices: Sequence[object] | None = None,
    precision: object = None,
    extraction: str | None = None,
    quick_extract: bool = False,
) -> Score:
    """MathVista testmini: extraction, normalisation, then exact ``==`` with the answer string.

    ``extraction`` is an answer already extracted (by an LLM judge, as the official pipeline does).
    Without one, :func:`mathvista_extract` runs on ``answer``; when it fails the official pipeline
    would ask the LLM, so ``needs_judge`` is set and ``answer`` itself is normalised as a
    provisional extraction. ``quick_extract`` is recorded in the details, so a report can say how
    answers were extracted.
    """
    needs_judge = False
    if extraction is not None:
        method, extracted = "given", extraction
    else:
        found = mathvista_extract(
            answer, question_type=question_type, answer_type=answer_type, choices=choices, quick_extract=quick_extract
        )
        method = "rules" if found is not None else "provisional"
        extracted = found if found is not None else answer
        needs_judge = found is None
    normalised = mathvista_normalise(
        extracted, question_type=question_type, answer_type=answer_type, choices=choices, precision=precision
    )
    correct = normalised is not None and normalised in as_references(references)
    return Score.of(
        correct,
        "mathvista",
        needs_judge=needs_judge,
        answer=answer,
        extraction=extracted,
        extraction_method=method,
        quick_extract=quick_extract,
        normalised=normalised,
    )


# ----------------------------------------------------------------------------------------- ChartQA
def _relaxed_float(text: str) -> float | None:
    try:
        if text.endswith("%"):
            return float(text.rstrip("%")) / 100.0
        return float(text)
    except ValueError:
        return None


def relaxed_correctness(target: str, prediction: str, max_relative_change: float = 0.05) -> bool:
    """pix2struct's ``relaxed_correctness``, the ChartQA metric lmms-eval and VLMEvalKit use.

    When both sides parse as floats (a trailing "%" divides by 100, so "50%" is 0.5 and does not
    equal "50") and the target is non-zero, the relative error must be at most 5%, boundary
    included. Otherwise, a target of 0 included, the strings must be equal ignoring case.
    """
    predicted, expected = _relaxed_float(prediction), _relaxed_float(target)
    if predicted is not None and expected:
        return abs(predicted - expected) / abs(expected) <= max_relative_change
    return prediction.lower() == target.lower()


def chartqa(prediction: object, references: References) -> Score:
    """ChartQA relaxed accuracy on the answer span; see :func:`match_chartqa`."""
    return match_chartqa(final_answer(prediction), references)


def match_chartqa(answer: str, references: References) -> Score:
    """ChartQA relaxed accuracy of ``answer``; with several references the best one counts, as pix2struct does."""
    matched = next((ref for ref in as_references(references) if relaxed_correctness(ref, answer)), None)
    return Score.of(matched is not None, "chartqa-relaxed", answer=answer, matched=matched)


# ------------------------------------------------------------------------------------ VQA-style text
def _squash(text: str) -> str:
    return " ".join(text.lower().split())


def exact_match(prediction: object, references: References) -> Score:
    """Exact match after lower-casing, collapsing whitespace and dropping one trailing full stop."""
    answer = final_answer(prediction)
    predicted = _squash(answer).removesuffix(".")
    matched = next((ref for ref in as_references(references) if _squash(ref).removesuffix(".") == predicted), None)
    return Score.of(matched is not None, "exact-match", answer=answer, matched=matched)


#: Rules whose score's value is partial credit: an accuracy over their items averages the values.
PARTIAL_CREDIT_RULES = frozenset({"anls"})


def anls(prediction: object, references: References, *, threshold: float = 0.5) -> Score:
    """ANLS on the answer span; see :func:`match_anls`."""
    return match_anls(final_answer(prediction), references, threshold=threshold)


def match_anls(answer: str, references: References, *, threshold: float = 0.5) -> Score:
    """Average Normalised Levenshtein Similarity of ``answer`` for one item (ST-VQA / DocVQA, Biten et al.
    2019), as the DocVQA/RRC evaluation script computes it.

    The edit distance is taken between the two strings lower-cased with whitespace collapsed, but divided
    by the longer of the two *as given*; the item earns ``1 - NL`` from its closest reference unless that
    is below ``threshold`` (so NL exactly 0.5 still earns 0.5). ``correct`` means the item earned credit.
    """
    predicted = _squash(answer)
    best_distance, best_reference = 1.0, None
    for reference in as_references(references):
        longest = max(len(reference.upper()), len(answer.upper()))
        distance = levenshtein(_squash(reference), predicted) / longest if longest else 0.0
        if best_reference is None or distance < best_distance:
            best_distance, best_reference = distance, reference
    value = 1.0 - best_distance if best_reference is not None else 0.0
    if value < threshold:
        value = 0.0
    return Score(
        value > 0.0,
        value,
        "anls",
        {"answer": answer, "closest": best_reference, "normalised_distance": best_distance},
    )


# -------------------------------------------------------------------------------- CodeVision / MVToolBench
_TOOL_RESPONSE_BLOCK = re.compile(r"<tool_response>.*?</tool_response>", re.DOTALL)
_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_OPTION_LETTER = re.compile(r"\b([A-D])\b")
_ANY_NUMBER = re.compile(r"[-+]?\d*\.?\d+")
_CHOICE_KEYS = ("A", "B", "C", "D")
#: A reply without answer tags is read from its last line only when it has fewer lines than this.
CODEVISION_MAX_LINES = 500
_TOLERANCE = 1e-4


def codevision_answer(response: object) -> str | None:
    """The answer span as CodeVision's released scorer reads it (None: there is no answer to judge).

    Tool responses are removed; then the last closed ``<answer>…</answer>``, else what follows the
    last ``<answer>``, else the last line of a reply shorter than :data:`CODEVISION_MAX_LINES` lines.
    """
    text = as_text(response)
    if not text:
        return None
    cleaned = _TOOL_RESPONSE_BLOCK.sub("", text)
    closed = _ANSWER_BLOCK.findall(cleaned)
    if closed:
        return closed[-1].strip()
    parts = cleaned.strip().split("<answer>")
    if len(parts) > 1:
        return parts[-1].strip()
    lines = cleaned.strip().splitlines()
    return lines[-1].strip() if lines and len(lines) < CODEVISION_MAX_LINES else None


def _float(text: str) -> float | None:
    try:
        return float(text)
    except (ValueError, OverflowError):
        return None


def _codevision_candidate(answer: str, truth: str) -> str | None:
    """What the released rule reads out of an answer: its last stand-alone letter A-D (upper-cased first,
    so an article "a" counts) when the truth is a letter, else the answer as a number or its last number."""
    if not answer:
        return None
    text = answer.upper()
    if truth.upper() in _CHOICE_KEYS:
        letters = _OPTION_LETTER.findall(text)
        return letters[-1] if letters else None
    value = _float(answer)
    if value is not None:
        return str(value)
    numbers = _ANY_NUMBER.findall(text)
    return numbers[-1] if numbers else None


def _fraction(text: str) -> float | None:
    try:
        return float(Fraction(text))
    except (ValueError, ZeroDivisionError, OverflowError):
        return None


def codevision_match(answer: str, truth: str) -> str | None:
    """How the released rule accepts ``answer`` for ``truth`` (the method), or None when it does not.

    In order: equal as numbers (or, when either is not a number, equal as text); the candidate
    (:func:`_codevision_candidate`) equal to the truth ignoring case; the candidate and the truth,
    read as fractions, within 1e-4.
    """
    answer_value, truth_value = _float(answer), _float(truth)
    if answer_value is not None and truth_value is not None:
        if answer_value == truth_value:
            return "numbers-equal"
    elif answer == truth:
        return "text-equal"
    candidate = _codevision_candidate(answer, truth)
    if candidate is None:
        return None
    wanted = truth.strip()
    if candidate.upper() == wanted.upper():
        return "letter" if wanted.upper() in _CHOICE_KEYS else "extracted"
    got, expected = _fraction(candidate), _fraction(wanted)
    if got is not None and expected is not None and abs(got - expected) <= _TOLERANCE:
        return "within-tolerance"
    return None


#: The released judge's prompt for a row, by keywords of its ``data_source`` (lower-cased, substring,
#: first kind that matches, else ``general``). The release also lists "IAM-line", "CASIA" and
#: "Hiertext" for OCR, but compares them with the lower-cased source, so they never match: HierText
#: rows (MVToolBench) are judged with the general prompt there, and here.
CODEVISION_JUDGE_TASKS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ocr", ("ocr", "optical", "text_recognition")),
    ("math", ("math", "mathematics", "arithmetic", "algebra", "geometry", "calculus")),
    ("code", ("code", "programming", "coding", "algorithm", "implementation")),
)
CODEVISION_JUDGE_PROMPTS: tuple[str, ...] = (*(task for task, _ in CODEVISION_JUDGE_TASKS), "general")


def codevision_judge_task(data_source: object) -> str:
    """Which of the released judge's prompts (``ocr``, ``math``, ``code``, ``general``) grades a row."""
    source = as_text(data_source).lower()
    for task, keywords in CODEVISION_JUDGE_TASKS:
        if any(keyword in source for keyword in keywords):
            return task
    return "general"


def codevision(prediction: object, references: References) -> Score:
    """CodeVision's released answer rule (``recipe/codevision/reward.py``), behaviour for behaviour.

    ``prediction`` is the whole response, every assistant turn (the release reads verl's decoded
    multi-turn rollout), not an answer already cut out. The answer is read by
    :func:`codevision_answer`; a response with none scores 0 and never goes to the judge. Otherwise
    :func:`codevision_match` decides, and whatever it does not accept goes to the LLM judge
    (``needs_judge``), as in the released code. Its quirks are kept on purpose (the rewards train
    against the same verdicts the released models were trained on): "1,234" reads as 234, and in a
    multiple-choice reply an article "a" counts as the letter A.
    """
    answer = codevision_answer(prediction)
    if answer is None:
        return Score.of(False, "codevision-rule", answer=None, matched=None, method="no-answer")
    for truth in as_references(references):
        method = codevision_match(answer, truth)
        if method is not None:
            return Score.of(True, "codevision-rule", answer=answer, matched=truth, method=method)
    return Score.of(False, "codevision-rule", needs_judge=True, answer=answer, matched=None, method=None)
