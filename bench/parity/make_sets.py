"""Held-out prediction sets for checking codevision's scoring against the official benchmark scripts.

Each set is a JSON Lines file under ``bench/parity/sets/``, one row per model reply, drawn from a
seed: realistic replies (a letter, a sentence, a number with its unit, reasoning in ``<think>``,
an ``<answer>`` tag, a ``\\boxed{}``) and adversarial ones (retracted answers, answers quoted from a
tool, hedges, refusals, letters hidden in words, near-miss numbers, odd white space and Unicode).
A row holds the whole ``reply``, the final answer ``span`` the reply was built around (what the
default mode scores), the ``references`` and the item fields the rule needs, and, where the row
exercises one of the deliberate differences between the default mode and the official script
(listed in ``docs/benchmarks.md``), its ``difference`` tag. The official verdicts are added to the
rows by ``bench/parity/label.py``; ``bench/parity/agreement.py`` compares.

    python bench/parity/make_sets.py            # writes bench/parity/sets/*.jsonl (labels are dropped)
    python bench/parity/make_sets.py --only codevision   # one set
    python bench/parity/label.py OFFICIAL_DIR   # adds the official verdicts
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

SETS = Path(__file__).parent / "sets"
Row = dict[str, Any]

# ------------------------------------------------------------------------------------ reply shapes
THOUGHTS = [
    "Let me look at the image carefully.",
    "First I zoom into the top-left corner, then I compare the candidates.",
    "The crop shows the region more clearly; the text is rotated, so I rotate it back.",
    "I count the objects one by one and double-check the total.",
    "Option A seems plausible at first, but the details do not fit.",
    "Looking again at the chart, the bars are labelled on the x axis.",
]


def wrap(shape: str, answer: str, decoy: str, rng: random.Random, *, unbox: bool = True) -> tuple[str, str]:
    """A reply of ``shape`` built around ``answer``, and the span the default mode should read from it.

    ``unbox=False`` gives the span as OCRBench's default rule reads it, which keeps ``\\boxed{}``.
    """
    thought = rng.choice(THOUGHTS)
    inner = answer.strip()
    if shape == "plain":
        return answer, inner
    if shape == "tagged":
        reply = f"<answer>{answer}</answer>"
        return reply, inner or reply
    if shape == "padded":
        reply = f"<answer>\n  {answer}  \n</answer>"
        return reply, inner or reply.strip()
    if shape == "think-tagged":
        reply = f"<think>{thought}</think>\n<answer>{answer}</answer>"
        return reply, inner or reply
    if shape == "think-plain":
        reply = f"<think>{thought}</think>\n\n{answer}"
        return reply, inner
    if shape == "retracted":
        reply = f"<answer>{decoy}</answer>\nWait, let me check that again.\n<answer>{answer}</answer>"
        return reply, inner or decoy.strip()
    if shape == "unclosed":
        reply = f"{thought}\n<answer>{answer}"
        return reply, inner or reply.strip()
    if shape == "tool-echo":
        reply = f"<tool_response><answer>{decoy}</answer></tool_response>\n{thought}\n<answer>{answer}</answer>"
        return reply, inner or f"{thought}\n<answer>{answer}</answer>".strip()
    if shape == "boxed":
        reply = f"{thought} So the final answer is \\boxed{{{answer}}}."
        return reply, (inner if unbox else reply.strip())
    if shape == "tagged-boxed":
        reply = f"<answer>\\boxed{{{answer}}}</answer>"
        return reply, (inner if unbox else f"\\boxed{{{answer}}}")
    if shape == "markdown":
        reply = f"**Answer:** {answer}"
        return reply, reply.strip()
    raise ValueError(f"unknown shape {shape!r}")


SHAPES = [
    "plain",
    "tagged",
    "padded",
    "think-tagged",
    "think-plain",
    "retracted",
    "unclosed",
    "tool-echo",
    "boxed",
    "tagged-boxed",
    "markdown",
]
# Shapes that need a non-empty answer to be read as the span they were built around.
EMPTY_SAFE = ["plain", "tagged"]


def shaped(answer: str, decoy: str, rng: random.Random, *, unbox: bool = True, shapes: list[str] = SHAPES) -> Row:
    """The reply fields of a row: the reply, its span and the shape's name."""
    shape = rng.choice(shapes if answer.strip() else EMPTY_SAFE)
    reply, span = wrap(shape, answer, decoy, rng, unbox=unbox)
    return {"reply_shape": shape, "reply": reply, "span": span}


def typo(text: str, rng: random.Random) -> str:
    """``text`` with one character replaced, so an exact rule must reject it."""
    if not text:
        return "x"
    position = rng.randrange(len(text))
    replacement = rng.choice([c for c in string.ascii_lowercase + string.digits if c != text[position].lower()])
    return text[:position] + replacement + text[position + 1 :]


# ---------------------------------------------------------------------------------------- OCRBench
OCR_WORDS = [
    "STOP",
    "communities",
    "Coffee",
    "EXIT",
    "12:30",
    "Coca-Cola",
    "$14.99",
    "New York",
    "2014",
    "Hello World",
    "ORANGE",
    "Total",
    "BREAKFAST",
    "r2d2",
    "Ave.",
    "24/7",
    "Main St",
    "No Parking",
    "KIOSK",
    "Sale 50%",
    "Ristorante",
    "café",
    "ÜBER",
    "straße",
    "7-Eleven",
    "0.75",
    "Invoice #4521",
]
OCR_SOURCES = [
    "IIIT5K",
    "svt",
    "IC13_857",
    "IC15_1811",
    "WordArt",
    "IAM",
    "ORAND",
    "docVQA",
    "ChartQA",
    "FUNSD",
    "SROIE",
    "POIE",
    "textVQA",
    "STVQA",
    "ESTVQA",
    "infographicVQA",
    "NonSemanticText",
    "ct80",
]
HME_REFERENCES = [
    "x ^ { 2 } + 1 = 0",
    "\\frac { 1 } { 2 }",
    "a + b = c",
    "\\sqrt { 2 }",
    "2 \\times 3 = 6",
    "y = k x + b",
    "2 + 1 = \\boxed { 3 }",
    "\\alpha + \\beta",
]


def ocr_prediction(reference: str, rng: random.Random, handwritten: bool) -> tuple[str, str]:
    """A predicted text for ``reference`` and the form's name."""
    if handwritten:
        forms: dict[str, Callable[[], str]] = {
            "exact": lambda: reference,
            "no-spaces": lambda: reference.replace(" ", ""),
            "spaced": lambda: "  ".join(reference.split()),
            "case-changed": reference.upper,
            "in-sentence": lambda: f"The expression is {reference}",
            "typo": lambda: typo(reference, rng),
            "newline": lambda: reference.replace(" ", "\n", 1),
        }
    else:
        forms = {
            "exact": lambda: reference,
            "lower": reference.lower,
            "upper": reference.upper,
            "in-sentence": lambda: f'The text in the image reads "{reference}".',
            "padded": lambda: f"  {reference}\n",
            "newline": lambda: reference.replace(" ", "\n", 1),
            "truncated": lambda: reference[:-1],
            "typo": lambda: typo(reference, rng),
            "extended": lambda: reference + rng.choice(["s", "1", " Street", "!"]),
            "prefixed": lambda: rng.choice(["1", "The ", "#"]) + reference,
            "refusal": lambda: "I cannot read the text in this image.",
            "empty": lambda: "",
        }
    name = rng.choice(sorted(forms))
    return forms[name](), name


def ocrbench_rows(rng: random.Random, n: int) -> list[Row]:
    rows = []
    for index in range(n):
        handwritten = rng.random() < 0.2
        source = "HME100k" if handwritten else rng.choice(OCR_SOURCES)
        reference = rng.choice(HME_REFERENCES if handwritten else OCR_WORDS)
        references: str | list[str] = reference
        if not handwritten and rng.random() < 0.2:
            references = [reference, rng.choice(OCR_WORDS)]
        if not handwritten and rng.random() < 0.02:
            references = ""  # an empty reference, which the release matches against anything
        prediction, form = ocr_prediction(reference, rng, handwritten)
        row = shaped(prediction, rng.choice(OCR_WORDS), rng, unbox=False)
        rows.append(
            {
                "id": f"ocrbench-{index:04d}",
                "form": form,
                **row,
                "references": references,
                "item": {"dataset_name": source},
            }
        )
    return rows


# --------------------------------------------------------------------------------------- MathVista
MC_CHOICES = [
    ["135°", "140°", "145°", "150°"],
    ["Yes", "No"],
    ["red", "blue", "green", "yellow"],
    ["2", "3", "4", "5"],
    ["(b)", "(a)", "(c)", "(d)"],
    ["A", "B", "C", "D"],
    ["larger than", "equal to", "smaller than"],
    ["$0.5$", "$1$", "$1.5$", "$2$", "$2.5$"],
]


def mathvista_item(rng: random.Random) -> tuple[dict[str, Any], str]:
    """The item fields of a random MathVista question and its answer string."""
    kind = rng.choice(["multi_choice", "multi_choice", "integer", "integer", "float", "list"])
    if kind == "multi_choice":
        choices = rng.choice(MC_CHOICES)
        item = {"question_type": "multi_choice", "answer_type": "text", "choices": choices, "precision": None}
        return item, rng.choice(choices)
    item = {"question_type": "free_form", "answer_type": kind, "choices": None, "precision": None}
    if kind == "integer":
        return item, str(rng.choice([0, 1, 2, 3, 7, 12, 25, 100, 1000, 2019, -4]))
    if kind == "float":
        precision = rng.choice([1, 2, 3, 1.0, 2.0])
        item["precision"] = precision
        value = round(rng.uniform(-5, 60), int(precision))
        return item, f"{value:.{int(precision)}f}"
    return item, rng.choice(["[1, 2, 3]", "[2014, 2016]", "[0.5, 1.5]"])


def mathvista_response(item: dict[str, Any], answer: str, rng: random.Random) -> tuple[str, str]:
    """A reply's answer part for a MathVista item, and the form's name."""
    choices = item["choices"] or []
    letter = "ABCDEFG"[choices.index(answer)] if answer in choices else "A"
    other = rng.choice([c for c in choices if c != answer] or ["0"])
    forms: dict[str, Callable[[], str]] = {
        "answer-text": lambda: answer,
        "answer-text-space": lambda: f"{answer} ",
        "quick-quoted": lambda: f'The answer is "{answer}".',
        "quick-letter": lambda: f'The answer is "{letter}".',
        "quick-lowercase": lambda: f'the answer is "{answer}".',
        "quick-no-period": lambda: f'The answer is "{answer}"',
        "quick-greedy": lambda: f'The answer is "{other}". Actually, the answer is "{answer}".',
        "unquoted": lambda: f"The answer is {answer}.",
        "letter": lambda: letter,
        "parenthesised-letter": lambda: f"({letter})",
        "letter-and-text": lambda: f"({letter}) {answer}",
        "sentence": lambda: f"Therefore, the value is {answer}.",
        "empty": lambda: "",
        "blank": lambda: "   ",
    }
    if item["answer_type"] in ("integer", "float"):
        forms.update(
            {
                "number-padded": lambda: f" {answer} ",
                "number-point-zero": lambda: f"{answer}.0",
                "number-plus": lambda: f"+{answer}",
                "number-underscore": lambda: answer.replace("0", "_0", 1) if "0" in answer[1:] else answer,
                "number-fullwidth": lambda: answer.translate(str.maketrans("0123456789", "０１２３４５６７８９")),
                "number-exponent": lambda: f"{float(answer):e}",
                "number-unit": lambda: f"{answer} cm",
                "number-comma": lambda: f"{answer},0",
                "nan": lambda: rng.choice(["nan", "inf", "-inf"]),
            }
        )
    name = rng.choice(sorted(forms))
    return forms[name](), name


def problem(item: dict[str, Any], index: int) -> dict[str, Any]:
    """The item fields the official scripts read, besides the answer."""
    return {**item, "pid": str(index), "query": "Question: (shown to the model)"}


def mathvista_extract_rows(rng: random.Random, n: int) -> list[Row]:
    rows = []
    for index in range(n):
        item, answer = mathvista_item(rng)
        response, form = mathvista_response(item, answer, rng)
        row = shaped(response, answer, rng)
        quick = rng.random() < 0.5
        rows.append(
            {
                "id": f"mathvista-extract-{index:04d}",
                "form": form,
                **row,
                "references": answer,
                "item": {**problem(item, index), "quick_extract": quick},
            }
        )
    return rows


def mc_extractions(choices: list[str], answer: str, rng: random.Random) -> dict[str, str]:
    letter = "ABCDEFG"[choices.index(answer)]
    return {
        "letter": letter,
        "lower-letter": letter.lower(),
        "parenthesised": f"({letter})",
        "parenthesised-lower": f"({letter.lower()})",
        "letter-and-text": f"({letter}) {answer}",
        "text": answer,
        "text-padded": f"  {answer} ",
        "text-upper": answer.upper(),
        "near-text": typo(answer, rng),
        "letter-period": f"{letter}.",
        "option-word": f"Option {letter}",
        "two-letters": "(A) or (B)",
        "beyond": "H",
        "empty": "",
        "none": "None",
        "refusal": "The correct option is not provided.",
    }


def number_extractions(answer: str, precision: object, rng: random.Random) -> dict[str, str]:
    value = float(answer)
    return {
        "exact": answer,
        "padded": f" {answer} ",
        "truncating": f"{value + 0.7}",
        "rounding": f"{value + 0.0049:.4f}",
        "half-even": f"{int(value)}.{'5' if precision in (None, 0) else '25'}",
        "binary-half": "2.675",
        "exponent": f"{value:e}",
        "comma": f"{int(value):,}0",
        "words": "twelve",
        "unit": f"{answer} cm",
        "percent": f"{answer}%",
        "fraction": "1/2",
        "negative-zero": "-0.0",
        "nan": "nan",
        "inf": "inf",
        "empty": "",
        "underscore": "1_000",
        "hex": "0x10",
    }


def list_extractions(answer: str) -> dict[str, str]:
    return {
        "exact": answer,
        "no-spaces": answer.replace(" ", ""),
        "tuple": answer.replace("[", "(").replace("]", ")"),
        "bare": answer.strip("[]"),
        "empty": "",
    }


def mathvista_normalise_rows(rng: random.Random, n: int) -> list[Row]:
    rows = []
    for index in range(n):
        item, answer = mathvista_item(rng)
        if item["question_type"] == "multi_choice":
            extractions = mc_extractions(item["choices"], answer, rng)
        elif item["answer_type"] == "list":
            extractions = list_extractions(answer)
        else:
            extractions = number_extractions(answer, item["precision"], rng)
        form = rng.choice(sorted(extractions))
        rows.append(
            {
                "id": f"mathvista-normalise-{index:04d}",
                "form": form,
                "extraction": extractions[form],
                "references": answer,
                "item": problem(item, index),
            }
        )
    return rows


def extractor_replies(item: dict[str, Any], answer: str, rng: random.Random) -> dict[str, tuple[str, str | None]]:
    """What an extractor might reply for an item, each with the difference it exercises (None: none)."""
    choices = item["choices"] or []
    letter = "ABCDEFG"[choices.index(answer)] if answer in choices else "A"
    value = answer if not choices else letter
    reading = "mathvista-extractor-reply"
    return {
        "bare": (value, None),
        "bare-text": (answer, None),
        "padded": (f"  {value}\n", None),
        "labelled": (f"Extracted answer: {value}", reading),
        "quoted": (f'"{value}"', reading),
        "none-word": ("NONE", reading),
        "explained": (f"{value}\n\nThe response states this value at the end.", reading),
        "thinking": (f"<think>The response ends with {value}.</think>\n{value}", reading),
        "sentence": (f"The answer is {value}", None),
        "refusal": ("Sorry, but I need more information to answer your question.", None),
        "blank": ("  ", reading),
        "wrong": (typo(value, rng), None),
    }


def mathvista_judge_rows(rng: random.Random, n: int) -> list[Row]:
    rows = []
    for index in range(n):
        item, answer = mathvista_item(rng)
        response = rng.choice(
            [
                f"Looking at the figure, I think the answer is {answer}, but let me explain.",
                f"The result is approximately {answer} after rounding.",
                "I am not sure how to solve this.",
                f"Step 1: read the values. Step 2: combine them. Final: {answer}",
            ]
        )
        replies = extractor_replies(item, answer, rng)
        form = rng.choice(sorted(replies))
        extractor_reply, difference = replies[form]
        row = shaped(response, answer, rng, shapes=["plain", "tagged", "think-tagged", "think-plain"])
        rows.append(
            {
                "id": f"mathvista-judge-{index:04d}",
                "form": form,
                **row,
                "extractor_reply": extractor_reply,
                "references": answer,
                "item": {**problem(item, index), "quick_extract": rng.random() < 0.5},
                **({"difference": difference} if difference else {}),
            }
        )
    return rows


# ----------------------------------------------------------------------------------------- ChartQA
CHART_NUMBERS = ["40", "12.5", "0.35", "0", "45%", "2019", "1200", "-3.2", "7", "100"]
CHART_TEXTS = ["Yes", "No", "Blue", "Mexico", "2010-2015", "Q3", "Food"]


def chart_prediction(reference: str, rng: random.Random) -> tuple[str, str]:
    number = None
    with contextlib.suppress(ValueError):
        number = float(reference.rstrip("%"))
    forms: dict[str, Callable[[], str]] = {
        "exact": lambda: reference,
        "lower": reference.lower,
        "period": lambda: f"{reference}.",
        "sentence": lambda: f"The answer is {reference}",
        "padded": lambda: f" {reference} ",
        "empty": lambda: "",
    }
    if number is not None:
        forms.update(
            {
                "within-5": lambda: f"{number * 1.049:.4g}",
                "boundary": lambda: f"{number * 1.05}",
                "beyond-5": lambda: f"{number * 1.06 + 0.01:.4g}",
                "percent": lambda: f"{number}%",
                "fraction-of-percent": lambda: f"{number / 100}",
                "thousands": lambda: f"{number:,.0f}",
                "currency": lambda: f"${reference}",
                "unit": lambda: f"{reference} million",
                "zero-forms": lambda: rng.choice(["0.0", "0", "-0", "0%"]),
                "exponent": lambda: f"{number:e}",
                "nan": lambda: rng.choice(["nan", "inf", "NaN"]),
            }
        )
    else:
        forms["typo"] = lambda: typo(reference, rng)
    name = rng.choice(sorted(forms))
    return forms[name](), name


def chartqa_rows(rng: random.Random, n: int) -> list[Row]:
    rows = []
    for index in range(n):
        reference = rng.choice(CHART_NUMBERS + CHART_TEXTS)
        prediction, form = chart_prediction(reference, rng)
        references = [reference] if rng.random() < 0.9 else [reference, rng.choice(CHART_NUMBERS)]
        row = shaped(prediction, rng.choice(CHART_NUMBERS), rng)
        rows.append({"id": f"chartqa-{index:04d}", "form": form, **row, "references": references, "item": {}})
    return rows


# -------------------------------------------------------------------------------------------- ANLS
DOC_ANSWERS = [
    "$1,250.00",
    "John Smith",
    "march 3, 2019",
    "42",
    "Department of Health",
    "straße",
    "INV-2021-0042",
    "yes",
    "New Delhi",
    "3.5 km",
    "ß",
    "Total Revenue",
    "12/05/1998",
]


def anls_prediction(reference: str, rng: random.Random) -> tuple[str, str]:
    forms: dict[str, Callable[[], str]] = {
        "exact": lambda: reference,
        "case": reference.upper,
        "spaced": lambda: "  ".join(reference.split()) + " ",
        "typo": lambda: typo(reference, rng),
        "two-typos": lambda: typo(typo(reference, rng), rng),
        "truncated": lambda: reference[: max(1, len(reference) // 2)],
        "extended": lambda: f"{reference} (approx.)",
        "sentence": lambda: f"The answer is {reference}.",
        "unrelated": lambda: rng.choice(DOC_ANSWERS),
        "empty": lambda: "",
        "sharp-s": lambda: reference.replace("ss", "ß").replace("SS", "ß"),
    }
    name = rng.choice(sorted(forms))
    return forms[name](), name


def anls_rows(rng: random.Random, n: int) -> list[Row]:
    rows = []
    for index in range(n):
        reference = rng.choice(DOC_ANSWERS)
        references = [reference, *rng.sample(DOC_ANSWERS, rng.choice([0, 0, 1, 2]))]
        if rng.random() < 0.03:
            references = [""]
        prediction, form = anls_prediction(reference, rng)
        row = shaped(prediction, rng.choice(DOC_ANSWERS), rng)
        rows.append({"id": f"anls-{index:04d}", "form": form, **row, "references": references, "item": {}})
    return rows


# ---------------------------------------------------------------------------- multiple choice (V*, HR)
VSTAR_ATTRIBUTES = [
    ["red", "blue", "green", "white"],
    ["black", "yellow", "purple", "orange"],
    ["wood", "metal", "plastic", "glass"],
    ["dog", "cat", "horse", "cow"],
]
VSTAR_RELATIVE = [["left", "right"], ["above", "below"]]
HR_OPTIONS = [
    ["The man in the red shirt", "The woman with an umbrella", "A child on a bicycle", "Nobody"],
    ["On the left side of the road", "On the right side of the road", "In the middle", "Not visible"],
    ["3", "4", "5", "6"],
    ["Bread", "Read", "Ready", "Bored"],
]


def letter_forms(
    options: list[str], key: int, rng: random.Random, tags: dict[str, str]
) -> dict[str, tuple[str, str | None]]:
    """Answers naming an option, each with the deliberate difference it exercises (``tags`` by form)."""
    letters = string.ascii_uppercase[: len(options)]
    right, wrong = letters[key], rng.choice([letter for letter in letters if letter != letters[key]])
    text, other = options[key], options[letters.index(wrong)]
    forms = {
        "letter": right,
        "wrong-letter": wrong,
        "lower-letter": right.lower(),
        "parenthesised": f"({right})",
        "letter-period": f"{right}.",
        "bold": f"**{right}**",
        "letter-and-text": f"({right}) {text}",
        "letter-dot-text": f"{right}. {text}",
        "answer-is": f"The answer is {right}.",
        "answer-colon": f"Answer: {right}",
        "option-word": f"Option {right}",
        "answer-parenthesised": f"The correct answer is ({right}).",
        "option-text": text,
        "sentence-text": f"Based on the image, the answer is {text}.",
        "article": f"A close look shows it is {text}.",
        "hedge": f"{right} or {wrong}",
        "discussed": f"Option {wrong} does not fit the image, so the answer is {right}.",
        "trailing-letter": f"I think it's {right}",
        "beyond-options": "C" if len(options) == 2 else "E",
        "refusal": "Cannot determine the answer from the image.",
        "none": "None of the options.",
        "wrong-text": other,
        "empty": "",
    }
    return {name: (reply, tags.get(name)) for name, reply in forms.items()}


VSTAR_TAGS = {
    "answer-colon": "vstar-letter-reading",
    "option-text": "vstar-letter-reading",
    "sentence-text": "vstar-letter-reading",
    "article": "vstar-letter-reading",
    "hedge": "vstar-letter-reading",
    "discussed": "vstar-letter-reading",
    "none": "vstar-letter-reading",
    "wrong-text": "vstar-letter-reading",
    "refusal": "vstar-letter-reading",
}
HRBENCH_TAGS = {
    "lower-letter": "hrbench-letter-reading",
    "article": "hrbench-letter-reading",
    "hedge": "hrbench-letter-reading",
    "discussed": "hrbench-letter-reading",
    "option-text": "hrbench-letter-reading",
    "sentence-text": "hrbench-letter-reading",
    "wrong-text": "hrbench-letter-reading",
}


def choice_rows(
    prefix: str,
    option_sets: list[list[str]],
    tags: dict[str, str],
    rng: random.Random,
    n: int,
    shape_tags: dict[str, str] | None = None,
) -> list[Row]:
    rows = []
    for index in range(n):
        options = list(rng.choice(option_sets))
        rng.shuffle(options)
        key = rng.randrange(len(options))
        forms = letter_forms(options, key, rng, tags)
        form = rng.choice(sorted(forms))
        answer, difference = forms[form]
        row = shaped(answer, rng.choice(string.ascii_uppercase[: len(options)]), rng)
        difference = difference or (shape_tags or {}).get(row["reply_shape"])
        rows.append(
            {
                "id": f"{prefix}-{index:04d}",
                "form": form,
                **row,
                "references": string.ascii_uppercase[key],
                "item": {"choices": options},
                **({"difference": difference} if difference else {}),
            }
        )
    return rows


def vstar_rows(rng: random.Random, n: int) -> list[Row]:
    # lmms-eval reads the "A" of a leading "**Answer:**" label, or nothing through its markdown.
    return choice_rows(
        "vstar", VSTAR_ATTRIBUTES + VSTAR_RELATIVE, VSTAR_TAGS, rng, n, {"markdown": "vstar-letter-reading"}
    )


def hrbench_letter_rows(rng: random.Random, n: int) -> list[Row]:
    return choice_rows("hrbench-letter", HR_OPTIONS, HRBENCH_TAGS, rng, n)


JUDGE_REPLIES = {
    "yes": ("Yes", None),
    "yes-period": ("yes.", None),
    "yes-upper": ("YES", None),
    "yes-explained": ("Yes, the answer matches the correct option.", None),
    "no": ("No", None),
    "no-explained": ("No, the answer picks a different option.", None),
    "yesterday": ("Yesterday's answer would have been right, but this one is not.", "hrbench-judge-reading"),
    "yes-but-no": ("yes-no: the answer does not match", "hrbench-judge-reading"),
    "bold-yes": ("**Yes**", "hrbench-judge-reading"),
    "space-yes": (" yes", "hrbench-judge-reading"),
    "one": ("1", "hrbench-judge-reading"),
    "zero": ("0", None),
    "correct": ("Correct", "hrbench-judge-reading"),
    "incorrect": ("Incorrect", None),
    "is-correct": ("The answer is correct.", "hrbench-judge-reading"),
    "not-correct": ("The answer is not correct.", None),
    "nope": ("Nope.", "hrbench-judge-reading"),
    "unsure": ("I am not sure.", "hrbench-judge-reading"),
    "thinking-yes": ("<think>The option letters agree.</think>\nYes", "hrbench-judge-reading"),
    "labelled-yes": ("Verdict: yes", "hrbench-judge-reading"),
    "empty": ("", "hrbench-judge-reading"),
}


def hrbench_judge_rows(rng: random.Random, n: int) -> list[Row]:
    rows = []
    for index in range(n):
        options = list(rng.choice(HR_OPTIONS))
        key = rng.randrange(len(options))
        letter = string.ascii_uppercase[key]
        answer = rng.choice([letter, f"({letter}) {options[key]}", "A", "I cannot tell.", options[key]])
        form = rng.choice(sorted(JUDGE_REPLIES))
        judge_reply, difference = JUDGE_REPLIES[form]
        row = shaped(answer, "B", rng, shapes=["plain", "tagged", "think-tagged"])
        rows.append(
            {
                "id": f"hrbench-judge-{index:04d}",
                "form": form,
                **row,
                "judge_reply": judge_reply,
                "references": letter,
                "item": {"choices": options, "question": "Which option is right?"},
                **({"difference": difference} if difference else {}),
            }
        )
    return rows


# ---------------------------------------------------------------------------------- CodeVision
#: Ground truths and ways a model writes each, right and wrong, with the kind of truth.
CODEVISION_ANSWERS: dict[str, tuple[str, list[str]]] = {
    "letter": (
        "B",
        [
            "B",
            "(B)",
            "B. the red car",
            "The answer is B",
            "b",
            "a red car",
            "B or C",
            "Option C is wrong, so B",
            "Answer: (D)",
            "I think it's A... no, B",
            "A",
            "None of them",
        ],
    ),
    "count": (
        "7",
        [
            "7",
            "7.0",
            "seven",
            "There are 7 cars",
            "07",
            " 7 ",
            "7 cars and 2 trucks",
            "6",
            "7.00001",
            "about 8",
            "1e1",
            "-7",
        ],
    ),
    "thousands": ("1234", ["1234", "1,234", "1234.0", "1 234", "The total is 1,234."]),
    "fraction": ("3/4", ["3/4", "0.75", "0.7500004", "three quarters", "6/8", "0.8"]),
    "decimal": ("0.5", ["1/2", ".5", "0.50", "50%", "0.49"]),
    "text": (
        "STOP",
        [
            "STOP",
            "stop",
            "Stop.",
            "The sign says STOP",
            "\\boxed{STOP}",
            "The sign reads:\nSTOP",
            "SHOP",
            "",
            "S T O P",
        ],
    ),
    "phrase": ("Main Street", ["Main Street", "main street", "Main St.", "It reads Main Street", "Maine Street"]),
}
#: Data sources of CodeVision rows and of rows a user may mix in; the release picks its judge prompt by them.
CODEVISION_SOURCES = [
    "hiertext",
    "ocr_vqa",
    "chartqa",
    "geometry3k",
    "mathverse",
    "textvqa",
    "IAM-line",
    "CASIA-HWDB",
    "vstar",
    "code_screenshot",
]
#: Judge replies, and the tag of those codevision's default reader reads differently from the release.
CODEVISION_JUDGE_REPLIES = {
    "one": ("1", None),
    "zero": ("0", None),
    "yes": ("Yes", None),
    "no": ("no", None),
    "correct": ("correct", None),
    "incorrect": ("Incorrect", None),
    "labelled-one": ("Verdict: 1", None),
    "score-zero": ("Score: 0", None),
    "bold-one": ("**1**", None),
    "thinking-one": ("<think>Both say seven.</think>\n1", None),
    "explained-one": ("1\nThe answers agree.", None),
    "not-correct": ("The answer is not correct.", None),
    "one-period": ("1.", "codevision-judge-reading"),
    "yes-period": ("Yes.", "codevision-judge-reading"),
    "correct-period": ("Correct.", "codevision-judge-reading"),
    "is-correct": ("The answer is correct.", "codevision-judge-reading"),
    "zero-mentions-one": ("0 (the answer should be 1 word)", "codevision-judge-reading"),
    "fraction-reply": ("0/1", "codevision-judge-reading"),
    "unsure": ("I am not sure.", "codevision-judge-reading"),
    "empty": ("", "codevision-judge-reading"),
}
CODEVISION_CODE = [
    "<code>\n```python\nimg = image.rotate(90, expand=True)\nimg.show()\n```\n</code>",
    "<code>\n```python\nw, h = image.size\nimage.crop((0, 0, w // 2, h // 2)).show()\n```\n</code>",
]
CODEVISION_TOOL_OUTPUTS = [
    "Image 1:",
    "The crop shows: <answer>SHOP</answer>",
    "Error: name 'img' is not defined",
    "(no output: nothing was printed or displayed)",
]


def codevision_turns(shape: str, answer: str, decoy: str, rng: random.Random) -> list[str]:
    """The assistant turns of a rollout of ``shape`` that ends with ``answer`` (``decoy``: an earlier wrong one)."""
    thought = rng.choice(THOUGHTS)
    code = rng.choice(CODEVISION_CODE)
    single = {
        "tagged": f"<think>{thought}</think>\n<answer>{answer}</answer>",
        "padded": f"<think>{thought}</think>\n<answer>\n  {answer}  \n</answer>\n",
        "unclosed": f"<think>{thought}</think>\n<answer>{answer}",
        "untagged": f"<think>{thought}</think>\n{answer}",
        "last-line": f"{thought}\nSo the answer is:\n{answer}",
        "retracted": f"<answer>{decoy}</answer>\nWait, let me check again.\n<answer>{answer}</answer>",
        "in-thought": f"<think>It might be <answer>{answer}</answer>.</think>\nI am done.",
        "upper-tags": f"<ANSWER>{answer}</ANSWER>",
        "long-untagged": "\n".join(["."] * 520 + [answer]),  # 500 lines or more: no answer
        "under-500-lines": "\n".join(["."] * 498 + [answer]),
        "empty": "",
        "blank": "  \n ",
    }
    if shape in single:
        return [single[shape]]
    if shape == "tool-then-answer":
        return [f"<think>{thought}</think>\n{code}", f"<think>Now I can read it.</think>\n<answer>{answer}</answer>"]
    if shape == "early-answer":
        return [f"<answer>{decoy}</answer>\nLet me verify.\n{code}", f"<answer>{answer}</answer>"]
    if shape == "tool-then-untagged":
        return [f"<think>{thought}</think>\n{code}", f"The result is clear.\n{answer}"]
    raise ValueError(shape)


CODEVISION_SHAPES = [
    "tagged",
    "padded",
    "unclosed",
    "untagged",
    "last-line",
    "retracted",
    "in-thought",
    "upper-tags",
    "long-untagged",
    "under-500-lines",
    "empty",
    "blank",
    "tool-then-answer",
    "early-answer",
    "tool-then-untagged",
]


def verl_response(turns: list[str], outputs: list[str]) -> str:
    """The rollout as verl decodes it for the released scorer: each tool result in the chat template's
    ``<tool_response>`` block between ``user`` and ``assistant`` (their special tokens skipped)."""
    response = turns[0]
    for output, turn in zip(outputs, turns[1:], strict=True):
        response += f"\nuser\n<tool_response>\n{output}\n</tool_response>\nassistant\n{turn}"
    return response


def codevision_rows(rng: random.Random, n: int) -> list[Row]:
    rows = []
    for index in range(n):
        kind = rng.choice(sorted(CODEVISION_ANSWERS))
        truth, written = CODEVISION_ANSWERS[kind]
        answer, decoy = rng.choice(written), rng.choice(written)
        shape = rng.choice(CODEVISION_SHAPES)
        turns = codevision_turns(shape, answer, decoy, rng)
        outputs = [rng.choice(CODEVISION_TOOL_OUTPUTS) for _ in turns[1:]]
        source = rng.choice(CODEVISION_SOURCES)
        if source == "code_screenshot":
            # codevision has no code prompt: the general one grades those rows (only readable replies here).
            form = rng.choice(["one", "zero"])
            difference: str | None = "codevision-code-prompt"
        else:
            form = rng.choice(sorted(CODEVISION_JUDGE_REPLIES))
            difference = CODEVISION_JUDGE_REPLIES[form][1]
        rows.append(
            {
                "id": f"codevision-{index:04d}",
                "form": kind,
                "shape": shape,
                "turns": turns,
                "response": verl_response(turns, outputs),
                "judge_form": form,
                "judge_reply": CODEVISION_JUDGE_REPLIES[form][0],
                "references": truth,
                "item": {"data_source": source, "question": "What does the image show?"},
                **({"difference": difference} if difference else {}),
            }
        )
    return rows


#: Each set: its file name, its builder and its size.
BUILDERS: dict[str, tuple[Callable[[random.Random, int], list[Row]], int]] = {
    "ocrbench": (ocrbench_rows, 400),
    "mathvista-extract": (mathvista_extract_rows, 400),
    "mathvista-normalise": (mathvista_normalise_rows, 400),
    "mathvista-judge": (mathvista_judge_rows, 300),
    "chartqa": (chartqa_rows, 400),
    "anls": (anls_rows, 400),
    "vstar": (vstar_rows, 400),
    "hrbench-letter": (hrbench_letter_rows, 400),
    "hrbench-judge": (hrbench_judge_rows, 300),
    "codevision": (codevision_rows, 600),
}


def write_sets(directory: Path, seed: int, only: list[str] | None = None) -> dict[str, int]:
    """Write every set, or those named in ``only``, without labels, and return the row counts."""
    directory.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, (build, size) in BUILDERS.items():
        if only and name not in only:
            continue
        rows = build(random.Random(f"{seed}-{name}"), size)
        with (directory / f"{name}.jsonl").open("w", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        counts[name] = len(rows)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=SETS)
    parser.add_argument("--only", nargs="+", choices=sorted(BUILDERS), help="write only these sets")
    args = parser.parse_args()
    for name, count in write_sets(args.out, args.seed, args.only).items():
        print(f"{name}: {count} rows")


if __name__ == "__main__":
    main()
