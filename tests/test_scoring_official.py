"""Strict-official scoring, MathVista's extraction setting, the prompts file, and their way to the CLI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from codevision.eval.scorer import make_scorer
from codevision.policies.fake_server import FakeOpenAIServer
from codevision.scoring import (
    LLMJudge,
    PromptFileError,
    ScoringOptions,
    load_official_prompts,
    official_prompts_needed,
    score,
    score_with_judge,
)
from codevision.scoring.official import (
    codevision_judge_says_correct,
    extractor_answer,
    hrbench_judge_says_yes,
    lmms_eval_letter,
    vlmevalkit_letter,
)
from codevision.scoring.rules import codevision_judge_task
from codevision.task import Task
from codevision.trajectory import Trajectory, Turn
from tests.test_cli import run_cli

STRICT = ScoringOptions("strict-official")
MC = {"question_type": "multi_choice", "answer_type": "text", "choices": ["135°", "140°", "145°", "150°"]}
HR = {"choices": ["red", "blue", "green", "white"], "question": "What colour is the car?"}
PROMPTS = """\
hrbench:
  template: |-
    Q: {question}
    {options}
    Right: {reference}. Reply: {response}? {{yes/no}}
mathvista:
  system: Extract answers.
  template: "{query}\\n\\n{response}\\n\\nExtracted answer: "
codevision-ocr:
  template: "OCR. Truth: {reference} Predicted: {response}"
codevision-math:
  template: "Math. {question} Expected: {reference} Model: {response}"
codevision-code:
  template: "Code. {question} {reference} {response}"
codevision-general:
  template: "General. {question} Standard: {reference} Model: {response}"
"""


@pytest.fixture
def prompts_file(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.yaml"
    path.write_text(PROMPTS, encoding="utf-8")
    return path


# ---------------------------------------------------------------------- the official readers
@pytest.mark.parametrize(
    ("reply", "letter"),
    [
        ("B", "B"),
        ("(c) green", "C"),
        ("Based on the image, it is red.", "B"),  # the first letter of the reply
        ("red", "D"),  # the only A-D letter of the reply
        ("The answer is clear: (A)", "C"),  # "answer is" then the C of "clear"
        ("<think>x</think> answer: d", "D"),
        ("Nothing here", None),
        ("", None),
    ],
)
def test_lmms_eval_letter_reading(reply: str, letter: str | None) -> None:
    assert lmms_eval_letter(reply) == letter


def test_vlmevalkit_letter_reading() -> None:
    options = {"A": "red", "B": "blue", "C": "green", "D": "white"}
    assert vlmevalkit_letter("B.", options) == "B"
    assert vlmevalkit_letter("A car that is blue", options) == "A"  # the article counts as a letter
    assert vlmevalkit_letter("The answer is B, not C", options) is None  # two letters, no option text
    assert vlmevalkit_letter("it is bored", {"A": "red", "B": "bored"}) is None  # "red" is in "bored" too
    assert vlmevalkit_letter("Cannot determine the answer", options) == "Z"
    assert vlmevalkit_letter("b", options) is None  # letters are upper-case only


def test_hrbench_judge_and_mathvista_extractor_readings() -> None:
    assert hrbench_judge_says_yes("Yesterday it would have been") and hrbench_judge_says_yes("YES.")
    assert not hrbench_judge_says_yes("**Yes**") and not hrbench_judge_says_yes(" yes")
    assert not hrbench_judge_says_yes("1") and not hrbench_judge_says_yes("")
    assert extractor_answer("  Extracted answer: 5 \n") == "Extracted answer: 5"
    assert extractor_answer("  ") == "" and extractor_answer("") is None


# ---------------------------------------------------------------------- the modes through score()
def test_strict_mode_scores_the_whole_reply_and_records_the_mode() -> None:
    reply = "<think>It says STOP</think><answer>GO</answer>"
    default, strict = score("ocrbench", reply, "stop"), score("ocrbench", reply, "stop", scoring_options=STRICT)
    assert not default.correct and default.details["mode"] == "default"
    assert strict.correct and strict.details["mode"] == "strict-official"
    tagged = "<answer>40</answer>"
    assert (
        score("chartqa", tagged, ["40"]).correct
        and not score("chartqa", tagged, ["40"], scoring_options=STRICT).correct
    )
    assert score("vstar", "Based on the image, A.", "A", choices=["x", "y"]).correct
    assert not score("vstar", "Based on the image, A.", "A", choices=["x", "y"], scoring_options=STRICT).correct


def test_closed_reasoning_is_not_the_answer() -> None:
    assert not score("ocrbench", "<think>the sign says STOP</think>\nGO", "stop").correct
    assert score("ocrbench", "<think>the sign says STOP", "stop").correct  # unclosed: it is all there is


def test_mathvista_quick_extraction_is_a_recorded_option() -> None:
    reply = 'So. The answer is "145°".'
    off = score("mathvista", reply, "145°", **MC)
    on = score("mathvista", reply, "145°", scoring_options=ScoringOptions(mathvista_quick_extract=True), **MC)
    assert off.needs_judge and off.details["quick_extract"] is False
    assert on.correct and not on.needs_judge and on.details["quick_extract"] is True


def test_mathvista_float_without_precision_fails_as_released() -> None:
    assert not score("mathvista", "3.14", "3.14", question_type="free_form", answer_type="float").correct
    assert score("mathvista", "3.14", "3.14", question_type="free_form", answer_type="float", precision="2").correct


def test_prompts_are_needed_only_where_strict_mode_asks_a_judge(prompts_file: Path) -> None:
    assert official_prompts_needed(["OCRBench", "HR-Bench 4K", "mathvista", "V*"]) == ["hrbench", "mathvista"]
    assert official_prompts_needed(["mvtoolbench"]) == [
        "codevision-code",
        "codevision-general",
        "codevision-math",
        "codevision-ocr",
    ]
    with pytest.raises(PromptFileError, match="--official-prompts"):
        STRICT.check_prompts(["hrbench"])
    ScoringOptions.of(strict_official=True, official_prompts=prompts_file).check_prompts(["hrbench", "mathvista"])
    STRICT.check_prompts([])
    with pytest.raises(ValueError, match="only in strict-official"):
        ScoringOptions.of(official_prompts=prompts_file)


# ---------------------------------------------------------------------- the prompts file
@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("hrbench: [", "not a valid UTF-8 YAML"),
        ("- a\n- b\n", "expected a mapping"),
        ("vstar:\n  template: '{response}'\n", "unknown benchmark 'vstar'"),
        ("hrbench: just text\n", "hrbench: expected a mapping"),
        ("hrbench:\n  template: '{reference} {response}'\n  temperature: 0\n", "unknown key\\(s\\) temperature"),
        ("mathvista:\n  system: x\n", r"mathvista.template: missing or empty"),
        ("mathvista:\n  template: '{response}'\n  system: 3\n", r"mathvista.system: expected a string"),
        ("mathvista:\n  template: '{respnse}'\n", r"unknown placeholder \{respnse\}"),
        ("hrbench:\n  template: '{response}'\n", r"missing placeholder\(s\) \{reference\}"),
        ("mathvista:\n  template: '{response} {'\n", "literal braces"),
        ("mathvista:\n  template: '{response!r}'\n", "no conversion or format spec"),
    ],
)
def test_prompt_file_errors_say_where(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "prompts.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(PromptFileError, match=message) as error:
        load_official_prompts(path)
    assert str(path) in str(error.value)


def test_prompt_file_renders_templates_verbatim(prompts_file: Path) -> None:
    prompts = load_official_prompts(prompts_file)
    rendered = prompts.template("hrbench").render(question="Q?", options="A. x", reference="A. x", response="A")
    assert rendered == "Q: Q?\nA. x\nRight: A. x. Reply: A? {yes/no}"
    assert prompts.template("mathvista").system == "Extract answers." and len(prompts.sha256) == 64
    with pytest.raises(PromptFileError, match="cannot read"):
        load_official_prompts(prompts_file.with_name("missing.yaml"))


# ---------------------------------------------------------------------- the judge in strict mode
def strict_judged(server: FakeOpenAIServer, prompts_file: Path, name: str, reply: str, reference: str, **item: Any):
    judge = LLMJudge(server.url, server.model, backoff=0.01)
    options = ScoringOptions.of(strict_official=True, official_prompts=prompts_file)
    return judge.run_sync(score_with_judge(name, reply, reference, judge=judge, scoring_options=options, **item))


def test_strict_hrbench_asks_the_users_prompt_and_reads_the_reply_as_released(prompts_file: Path) -> None:
    reply = "<think>hmm</think><answer>C</answer>"
    with FakeOpenAIServer(lambda body: "Yesterday I would have said no.") as server:
        result = strict_judged(server, prompts_file, "hrbench", reply, "B", **HR)
        body = server.requests[0].body or {}
    assert result.correct and result.rule == "hrbench+judge" and not result.needs_judge
    assert result.details["mode"] == "strict-official" and result.details["judge"]["kind"] == "hrbench-official"
    assert [message["role"] for message in body["messages"]] == ["user"]  # no system message, as released
    prompt = body["messages"][0]["content"]
    options = "A. red\nB. blue\nC. green\nD. white"
    assert prompt == f"Q: What colour is the car?\n{options}\nRight: B. blue. Reply: {reply}? {{yes/no}}"


def test_strict_mathvista_uses_the_stripped_extractor_reply(prompts_file: Path) -> None:
    with FakeOpenAIServer(lambda body: "  Extracted answer: C ") as server:
        labelled = strict_judged(server, prompts_file, "mathvista", "It is the third.", "145°", query="Q?", **MC)
        body = server.requests[0].body or {}
    assert labelled.details["extraction"] == "Extracted answer: C" and labelled.rule == "mathvista+judge"
    assert [message["role"] for message in body["messages"]] == ["system", "user"]
    assert body["messages"][1]["content"] == "Q?\n\nIt is the third.\n\nExtracted answer: "
    with FakeOpenAIServer(lambda body: "C") as server:
        assert strict_judged(server, prompts_file, "mathvista", "It is the third.", "145°", **MC).correct


@pytest.mark.parametrize(
    ("reply", "correct"),
    [
        ("1", True),
        ("0.0", False),
        ("Verdict: 1", True),
        ("answer: verdict: 0", False),  # each prefix is removed once, in its order: "verdict: 0" is left
        ("Correct", True),
        ("Correct.", False),  # not a verdict word, and no digit
        ("1.", False),  # the stand-alone 1 may not be followed by a full stop
        ("0/1", True),  # the first stand-alone 1 wins
        ("0 (the answer should be 1 word)", True),
        ("**0**", False),
        ("score:1", True),
        ("", False),
        ("I am not sure.", False),
    ],
)
def test_codevision_judge_reply_is_read_as_released(reply: str, correct: bool) -> None:
    assert codevision_judge_says_correct(reply) is correct


@pytest.mark.parametrize(
    ("data_source", "task"),
    [
        ("ocr_vqa", "ocr"),
        ("Optical-Chars", "ocr"),
        ("hiertext", "general"),  # the release's "Hiertext" keyword is never matched
        ("IAM-line", "general"),
        ("MathVista", "math"),
        ("geometry3k", "math"),
        ("code_screenshot", "code"),
        ("chartqa", "general"),
        (None, "general"),
    ],
)
def test_codevision_judge_prompt_is_picked_by_data_source_as_released(data_source: str | None, task: str) -> None:
    assert codevision_judge_task(data_source) == task


def test_strict_codevision_asks_the_prompt_of_the_rows_kind_with_the_answer(prompts_file: Path) -> None:
    reply = "<think>The sign is rotated.</think>\n<answer>The sign reads\nST0P</answer>"
    question = {"question": "What does the sign say?"}
    with FakeOpenAIServer(lambda body: "0/1") as server:
        result = strict_judged(server, prompts_file, "codevision", reply, "STOP", data_source="ocr_vqa", **question)
        body = server.requests[0].body or {}
    assert result.correct and result.rule == "codevision-rule+judge"  # "0/1" reads as 1, as released
    assert [message["role"] for message in body["messages"]] == ["user"]
    assert body["messages"][0]["content"] == "OCR. Truth: STOP Predicted: The sign reads\nST0P"
    with FakeOpenAIServer(lambda body: "1.") as server:
        result = strict_judged(server, prompts_file, "codevision", reply, "STOP", data_source="hiertext", **question)
        body = server.requests[0].body or {}
    assert not result.correct and not result.needs_judge
    assert body["messages"][0]["content"].startswith("General. What does the sign say? Standard: STOP")


def test_default_codevision_judge_prompt_follows_the_data_source() -> None:
    with FakeOpenAIServer(lambda body: "1") as server:
        judge = LLMJudge(server.url, server.model, backoff=0.01)
        for source in ("ocr_vqa", "mathverse", "hiertext", "code_screenshot"):
            judge.run_sync(score_with_judge("codevision", "<answer>x</answer>", "y", judge=judge, data_source=source))
        prompts = [(request.body or {})["messages"][-1]["content"] for request in server.requests]
    assert [prompt.split("\n", 1)[0] for prompt in prompts] == [
        "Decide whether a text-recognition answer reads the same text as the reference.",
        "Decide whether the final answer to a math or chart question equals the reference answer.",
        "Decide whether an answer to a question about an image means the same as the reference answer.",
        "Decide whether an answer to a question about an image means the same as the reference answer.",
    ]


def test_strict_judging_without_prompts_is_refused() -> None:
    with FakeOpenAIServer(lambda body: "yes") as server:
        judge = LLMJudge(server.url, server.model, backoff=0.01)
        with pytest.raises(PromptFileError, match="official prompt"):
            judge.run_sync(score_with_judge("hrbench", "B", "B", judge=judge, scoring_options=STRICT, **HR))


# ---------------------------------------------------------------------- make_scorer and the CLI
def test_make_scorer_strict_reads_the_last_reply_in_full() -> None:
    task = Task(id="1", question="What is written?", answers=["stop"], source="ocrbench", images=[])
    trajectory = Trajectory(task_id="1", protocol="codevision", final_answer="GO")
    trajectory.turns = [Turn(index=0, text="<think>It reads STOP</think><answer>GO</answer>", answer="GO")]
    default = asyncio.run(make_scorer()(task, trajectory))
    strict = asyncio.run(make_scorer(strict_official=True)(task, trajectory))
    assert not default["correct"] and default["details"]["mode"] == "default"
    assert strict["correct"] and strict["details"]["mode"] == "strict-official"


def test_codevision_rows_are_scored_on_every_turn_as_released() -> None:
    task = Task(id="1", question="Read the sign.", answers=["STOP"], source="verl", metadata={"scoring": "codevision"})
    first = Turn(index=0, text="<answer>GO</answer>\nLet me check.\n<code>image.show()</code>")
    trajectory = Trajectory(task_id="1", protocol="codevision", final_answer="STOP")
    # The release's answer is the last <answer> of the whole response: none in the last turn here.
    trajectory.turns = [first, Turn(index=1, text="Now it is clear:\nSTOP")]
    scored = asyncio.run(make_scorer()(task, trajectory))
    assert not scored["correct"] and scored["needs_judge"] and scored["details"]["answer"] == "GO"
    # A multi-line answer is judged whole, not by its last line (which the cut answer would give).
    trajectory.turns = [Turn(index=0, text="<answer>The sign reads\nSTOP</answer>")]
    trajectory.final_answer = "The sign reads\nSTOP"
    assert asyncio.run(make_scorer()(task, trajectory))["needs_judge"]
    for strict in (False, True):
        assert asyncio.run(make_scorer(strict_official=strict)(task, trajectory))["details"]["answer"] == (
            "The sign reads\nSTOP"
        )


def test_cli_records_the_scoring_and_refuses_to_resume_with_another(tmp_path: Path) -> None:
    (tmp_path / "replies.json").write_text(json.dumps(["<answer>nothing</answer>"]))
    args = ["eval", "-m", "scripted:replies.json", "-b", "synthetic:2", "--protocol", "direct", "-o", "run"]
    done = run_cli(*args, "--strict-official", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    config = json.loads((tmp_path / "run" / "run.json").read_text())
    assert config["scoring"] == {"mode": "strict-official", "mathvista_quick_extract": False, "official_prompts": None}
    record = json.loads((tmp_path / "run" / "results.jsonl").read_text().splitlines()[0])
    assert record["rule"] == "ocrbench"
    changed = run_cli(*args, "--resume", cwd=tmp_path)
    assert changed.returncode == 2 and "different scoring" in " ".join(changed.stderr.split())
    prompts_alone = run_cli(*args[:-1], "other", "--official-prompts", "p.yaml", cwd=tmp_path)
    assert prompts_alone.returncode == 2 and "strict-official" in " ".join(prompts_alone.stderr.split())
