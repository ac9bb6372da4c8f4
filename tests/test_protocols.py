"""Protocols against the replies real models write: well-formed, truncated, malformed and misplaced."""

from __future__ import annotations

import json

import numpy as np
import pytest

from codevision.protocols import PROTOCOLS, ParsedTurn, get_protocol
from codevision.protocols.base import MAX_OBSERVATION_CHARS
from codevision.protocols.code_tags import CodeTagsProtocol
from codevision.protocols.codevision import CodeVisionProtocol
from codevision.protocols.crop import CropProtocol, crop_image, resolve_bbox
from codevision.protocols.registry import DEFAULT_PROTOCOL
from codevision.protocols.render import NO_OUTPUT
from codevision.protocols.toolcalls import ToolProtocol, clean_code, find_blocks, split_think, strip_fence
from codevision.trajectory import Action, ImagePart, Message, TextPart, ToolOutcome
from tests.conftest import gradient_image

CV = CodeVisionProtocol()
TAGS = CodeTagsProtocol()
CROP = CropProtocol()
CV_CONTINUE = "Continue: call code_image_tool again if you need to, or give your final answer in <answer></answer>."
TAGS_CONTINUE = "Continue: write another <code> block if you need to, or give your final answer in <answer></answer>."


def call(arguments: object, name: str = "code_image_tool") -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def only_action(text: str, protocol: ToolProtocol = CV) -> Action:
    turn = protocol.parse(text)
    assert len(turn.actions) == 1 and not turn.issues and turn.answer is None, turn
    return turn.actions[0]


def only_issue(text: str, protocol: ToolProtocol = CV) -> str:
    turn = protocol.parse(text)
    assert not turn.actions and turn.answer is None and len(turn.issues) == 1, turn
    return turn.issues[0]


# ---------------------------------------------------------------------------------------------- registry
def test_registry_names_every_protocol_and_defaults_to_codevision() -> None:
    assert set(PROTOCOLS) == {"codevision", "code-tags", "crop", "direct"}
    assert DEFAULT_PROTOCOL == "codevision"
    assert isinstance(get_protocol(), CodeVisionProtocol)
    assert [get_protocol(n).uses_sandbox for n in ("codevision", "code-tags", "crop", "direct")] == [
        True,
        True,
        False,
        False,
    ]
    assert CodeVisionProtocol.max_calls_per_turn == 1
    with pytest.raises(ValueError, match="choose one of: code-tags, codevision, crop, direct"):
        get_protocol("nope")


@pytest.mark.parametrize("protocol", [CV, TAGS, CROP], ids=lambda p: p.name)
def test_the_example_in_each_system_prompt_parses_to_one_action(protocol: ToolProtocol) -> None:
    prompt = protocol.system_prompt()
    block = next(b for b in find_blocks(prompt, protocol.call_tag) if b.body.strip())
    action = only_action(block.raw, protocol)
    assert action.image_index == (None if protocol is TAGS else 0)


def test_initial_messages_label_every_input_image_with_its_index() -> None:
    for protocol in (CV, TAGS, CROP):
        system, user = protocol.initial_messages("What is written?", [0, 1])
        assert system == Message.of("system", protocol.system_prompt())
        assert user.content == [
            TextPart(text="Image 0: "),
            ImagePart(index=0),
            TextPart(text="\nImage 1: "),
            ImagePart(index=1),
            TextPart(text="\nWhat is written?"),
        ]


# ---------------------------------------------------------------------------------------------- codevision
def test_a_well_formed_call_after_thinking() -> None:
    text = "<think>The text is sideways.</think>\n" + call(
        {"code": "display(image.rotate(90, expand=True))", "image_index": 1, "description": "turn upright"}
    )
    action = only_action(text)
    assert (action.kind, action.code, action.image_index) == ("code", "display(image.rotate(90, expand=True))", 1)
    assert action.raw == text.split("\n", 1)[1]


def test_an_unclosed_tool_call_at_the_end_still_runs() -> None:
    action = only_action('Let me rotate.\n<tool_call>{"name": "code_image_tool", "arguments": {"code": "print(1)"}}')
    assert (action.code, action.image_index) == ("print(1)", 0)


def test_only_the_first_of_several_calls_runs() -> None:
    turn = CV.parse(call({"code": "a = 1"}) + "\n" + call({"code": "b = 2"}) + call({"code": "c = 3"}))
    assert [a.code for a in turn.actions] == ["a = 1"]
    assert turn.issues == [
        "You made 3 calls in one turn; only the first was considered and the rest were ignored. "
        "Decide each next call after seeing the result of the previous one."
    ]


def test_an_unclosed_call_ends_where_the_next_one_opens() -> None:
    turn = CV.parse('<tool_call>{"name": "code_image_tool", "arguments": {"code": "a = 1"}}\n' + call({"code": "b"}))
    assert [a.code for a in turn.actions] == ["a = 1"] and "2 calls" in turn.issues[0]


def test_invalid_json_names_the_problem_and_shows_the_expected_shape() -> None:
    issue = only_issue('<tool_call>{"name": "code_image_tool", "arguments": {"code": "print("hi")"}}</tool_call>')
    assert issue.startswith("Your <tool_call> is not valid JSON: Expecting ',' delimiter at line 1, column 59")
    assert "(near `" in issue and "so nothing was run" in issue
    assert '<tool_call>{"name": "code_image_tool", "arguments": {"code": "...", "image_index": 0}}</tool_call>' in issue
    assert 'write line breaks as \\n and quotes as \\"' in issue


def test_json_cut_short_is_not_completed_but_reported() -> None:
    issue = only_issue('<tool_call>{"name": "code_image_tool", "arguments": {"code": "print(1"</tool_call>')
    assert "the JSON ends before every { and quote is closed" in issue


def test_a_tool_call_without_json_is_reported() -> None:
    assert "there is no JSON object" in only_issue("<tool_call>code_image_tool(print(1))</tool_call>")


@pytest.mark.parametrize(
    "body",
    [
        # Raw line breaks and tabs inside the JSON string.
        '{"name": "code_image_tool", "arguments": {"code": "x = 1\n\tprint(x)"}}',
        # Code fenced inside the JSON string, closed and unclosed.
        '{"name": "code_image_tool", "arguments": {"code": "```python\\nx = 1\\n\\tprint(x)\\n```"}}',
        '{"name": "code_image_tool", "arguments": {"code": "```python\\nx = 1\\n\\tprint(x)"}}',
        # Arguments as a JSON string, and "parameters" for "arguments".
        '{"name": "code_image_tool", "arguments": "{\\"code\\": \\"x = 1\\\\n\\\\tprint(x)\\"}"}',
        '{"name": "code_image_tool", "parameters": {"code": "x = 1\\n\\tprint(x)"}}',
        # An OpenAI-style wrapper, arguments beside the name, a fenced body, prose and extra braces around it.
        '{"function": {"name": "code_image_tool", "arguments": {"code": "x = 1\\n\\tprint(x)"}}}',
        '{"name": "code_image_tool", "code": "x = 1\\n\\tprint(x)"}',
        '```json\n{"name": "code_image_tool", "arguments": {"code": "x = 1\\n\\tprint(x)"}}\n```',
        'Calling: {"name": "code_image_tool", "arguments": {"code": "x = 1\\n\\tprint(x)"}}} done',
        # Python literal syntax.
        "{'name': 'code_image_tool', 'arguments': {'code': '''x = 1\n\tprint(x)'''}}",
    ],
)
def test_repairable_calls_are_accepted(body: str) -> None:
    assert only_action(f"<tool_call>{body}</tool_call>").code == "x = 1\n\tprint(x)"


def test_escapes_json_does_not_know_are_kept_as_written() -> None:
    body = r'{"name": "code_image_tool", "arguments": {"code": "import re\nprint(re.findall(r\"\d+\", \"a1\"))"}}'
    assert only_action(f"<tool_call>{body}</tool_call>").code == 'import re\nprint(re.findall(r"\\d+", "a1"))'


def test_indented_code_is_dedented() -> None:
    assert only_action(call({"code": "    x = 1\n    if x:\n        print(x)"})).code == "x = 1\nif x:\n    print(x)"


def test_a_wrong_tool_name_is_not_run() -> None:
    issue = only_issue(call({"code": "print(1)"}, name="python"))
    assert issue.startswith("There is no tool named 'python'; the only tool is code_image_tool. Call it as <tool_call>")


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"image_index": 0}, 'Your code_image_tool call has no "code" (a string of Python), so nothing was run.'),
        ({"code": "  \n"}, 'Your code_image_tool call has no "code" (a string of Python), so nothing was run.'),
        (
            {"code": "```python\n```"},
            'Your code_image_tool call has no "code" (a string of Python), so nothing was run.',
        ),
        ({"code": ["print(1)"]}, 'Your code_image_tool call has no "code" (a string of Python), so nothing was run.'),
        (
            {"code": "x", "image_index": -1},
            "In your code_image_tool call, image_index must be 0 or more (images are numbered 0, 1, 2, ... in "
            "order), not -1; nothing was run.",
        ),
        (
            {"code": "x", "image_index": "first"},
            "In your code_image_tool call, image_index must be a whole number such as 0 or 1, not 'first'; "
            "nothing was run.",
        ),
        (
            {"code": "x", "image_index": 1.5},
            "In your code_image_tool call, image_index must be a whole number such as 0 or 1, not 1.5; "
            "nothing was run.",
        ),
        (
            {"code": "x", "image_index": True},
            "In your code_image_tool call, image_index must be a whole number such as 0 or 1, not True; "
            "nothing was run.",
        ),
        (
            {"code": "x", "image_index": "-2"},
            "In your code_image_tool call, image_index must be 0 or more (images are numbered 0, 1, 2, ... in "
            "order), not -2; nothing was run.",
        ),
    ],
)
def test_bad_arguments_become_issues(arguments: dict, expected: str) -> None:
    assert only_issue(call(arguments)) == expected


@pytest.mark.parametrize(("given", "index"), [(None, 0), (2, 2), ("1", 1), (" 3 ", 3), (2.0, 2)])
def test_image_index_defaults_to_zero_and_accepts_whole_numbers(given: object, index: int) -> None:
    arguments = {"code": "x"} if given is None else {"code": "x", "image_index": given}
    assert only_action(call(arguments)).image_index == index


def test_code_outside_a_tool_call_is_not_run_and_the_model_is_told_how() -> None:
    issue = only_issue("I will rotate it.\n```python\ndisplay(image.rotate(90))\n```")
    assert issue.startswith("Your code was not run: code runs only through the tool. Put it in <tool_call>")
    assert issue.endswith("Or, if you are done, give the final answer in <answer></answer>.")


def test_a_call_written_only_inside_think_is_not_run() -> None:
    issue = only_issue("<think>Maybe " + call({"code": "x"}) + "</think>Let me look.")
    assert issue == "Your <tool_call> was inside <think></think>, so it was not run. Write it after </think>."


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("<think>Easy.</think><answer>B</answer>", "B"),
        ("The total is \\boxed{42}.", "42"),
        ("<answer>1</answer> no wait <answer>2</answer>", "2"),
        ("Done. <answer> 7 ", "7"),
        # Only inside <think>: still the answer, unless there is one outside.
        ("<think>So the answer is <answer>C</answer></think>", "C"),
        ("<think>maybe <answer>C</answer></think> <answer>D</answer>", "D"),
        # The chat template opened the thought: everything before a lone </think> is thinking.
        ("it is sideways <answer>C</answer></think>", "C"),
        ("draft <answer>C</answer></think><answer>D</answer>", "D"),
    ],
)
def test_answers(text: str, answer: str) -> None:
    assert CV.parse(text) == ParsedTurn(answer=answer)


def test_an_answer_given_with_a_call_is_premature() -> None:
    turn = CV.parse(call({"code": "print(image.size)"}) + "\n<answer>42</answer>")
    assert [a.code for a in turn.actions] == ["print(image.size)"] and turn.answer is None
    assert turn.issues == [
        "Your answer was set aside because you gave it in the same turn as a call, before seeing the result. "
        "Look at the result first, then give the final answer in <answer></answer>."
    ]


def test_an_answer_with_a_broken_call_is_premature_too() -> None:
    turn = CV.parse('<tool_call>{"name": "code_image_tool", "arguments": {"code": </tool_call><answer>4</answer>')
    assert not turn.actions and turn.answer is None and len(turn.issues) == 2


def test_a_draft_answer_inside_think_does_not_block_a_call() -> None:
    action = only_action("<think>Perhaps <answer>3</answer>, but check.</think>" + call({"code": "print(1)"}))
    assert action.code == "print(1)"
    action = only_action("Perhaps <answer>3</answer>.</think>" + call({"code": "print(2)"}))
    assert action.code == "print(2)"


def test_answer_tags_inside_code_are_not_the_answer() -> None:
    assert only_action(call({"code": "print('<answer>9</answer>')"})).code == "print('<answer>9</answer>')"


@pytest.mark.parametrize("text", ["", "   \n", "I am not sure what to do.", "<think>hmm</think>"])
def test_a_reply_with_nothing_to_do(text: str) -> None:
    turn = CV.parse(text)
    assert (turn.actions, turn.answer, turn.issues) == ([], None, [])


# ---------------------------------------------------------------------------------------------- code-tags
@pytest.mark.parametrize(
    "text",
    [
        "Rotate it.\n<code>\n```python\nx = 1\nprint(x)\n```\n</code>",
        "<code>```python\nx = 1\nprint(x)```</code>",
        "<code>\nx = 1\nprint(x)\n</code>",
        # Unclosed fence, missing </code>, both, and prose after the fence without </code>.
        "<code>\n```python\nx = 1\nprint(x)\n</code>",
        "<code>\n```python\nx = 1\nprint(x)\n```",
        "<code>\n```python\nx = 1\nprint(x)\n",
        "<code>\n```python\nx = 1\nprint(x)\n```\nThe output will show x.",
    ],
)
def test_code_tags_read_the_code_however_it_ends(text: str) -> None:
    action = only_action(text, TAGS)
    assert (action.kind, action.code, action.image_index) == ("code", "x = 1\nprint(x)", None)


@pytest.mark.parametrize(
    ("tag", "index"), [('<code image_index="2">', 2), ("<code image_index=1>", 1), ("<CODE>", None)]
)
def test_code_tags_take_an_optional_image_index(tag: str, index: int | None) -> None:
    assert only_action(f"{tag}\n```python\nprint(image.size)\n```\n</code>", TAGS).image_index == index


@pytest.mark.parametrize(
    ("tag", "problem"),
    [
        ("<code image_index='-1'>", "image_index must be 0 or more"),
        ('<code image_index="last">', "image_index must be a whole number such as 0 or 1, not 'last'"),
    ],
)
def test_code_tags_refuse_a_bad_image_index(tag: str, problem: str) -> None:
    issue = only_issue(f"{tag}print(1)</code>", TAGS)
    assert issue.startswith(f"In your <code> tag, {problem}") and issue.endswith("; nothing was run.")


def test_code_tags_issues() -> None:
    assert only_issue("<code>\n```python\n```\n</code>", TAGS).startswith("Your <code></code> block is empty")
    bare = only_issue("```python\nprint(1)\n```", TAGS)
    assert bare.startswith("Your code was not run: only code inside <code></code> runs.")
    turn = TAGS.parse("<code>a = 1</code>\n<code>b = 2</code>")
    assert [a.code for a in turn.actions] == ["a = 1"] and turn.issues[0].startswith("You made 2 calls in one turn")
    turn = TAGS.parse("<code>print(1)</code>\n<answer>1</answer>")
    assert turn.answer is None and turn.issues[0].startswith("Your answer was set aside")
    assert TAGS.parse("Looks like <answer>5</answer>").answer == "5"


# ---------------------------------------------------------------------------------------------- crop
def test_crop_calls_record_the_box_as_given() -> None:
    action = only_action(call({"bbox_2d": [0.5, 0.25, 1, 1]}, name="image_zoom_in_tool"), CROP)
    assert (action.kind, action.bbox, action.image_index, action.code) == ("crop", [0.5, 0.25, 1.0, 1.0], 0, None)
    action = only_action(call({"bbox_2d": "[10, 20, 30, 40]", "image_index": "1"}, name="image_zoom_in_tool"), CROP)
    assert (action.bbox, action.image_index) == ([10.0, 20.0, 30.0, 40.0], 1)


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({}, "bbox_2d must be a list of four numbers [x1, y1, x2, y2], not None"),
        ({"bbox_2d": [1, 2, 3]}, "bbox_2d must have four numbers [x1, y1, x2, y2], not 3"),
        ({"bbox_2d": [1, "a", 3, 4]}, "bbox_2d must hold four numbers, not [1, 'a', 3, 4]"),
    ],
)
def test_crop_calls_with_a_bad_box_are_not_run(arguments: dict, problem: str) -> None:
    issue = only_issue(call(arguments, name="image_zoom_in_tool"), CROP)
    assert issue == f"In your image_zoom_in_tool call, {problem}; nothing was run."


def test_crop_protocol_names_its_own_tool() -> None:
    issue = only_issue(call({"code": "x"}), CROP)
    assert issue.startswith("There is no tool named 'code_image_tool'; the only tool is image_zoom_in_tool.")
    assert only_issue("```python\nimage.crop((1, 2, 3, 4))\n```", CROP).startswith("Code cannot be run here.")


@pytest.mark.parametrize(
    ("bbox", "resolved"),
    [
        ([10, 5, 30, 25], (10, 5, 30, 25)),
        ([0.5, 0.5, 1.0, 1.0], (50, 25, 100, 50)),
        ([0, 0, 1, 1], (0, 0, 100, 50)),
        ([10.4, 5.6, 30.2, 25.1], (10, 5, 31, 26)),
        ([-20, -5, 40, 500], (0, 0, 40, 50)),
        ((90, 40, 120, 80), (90, 40, 100, 50)),
        ([10, 5, 30, 25.5], (10, 5, 30, 26)),
        ([10, 5, 30, 25, 1], "bbox_2d must have four numbers [x1, y1, x2, y2], not 5"),
        ("10, 5, 30, 25", "bbox_2d must be a list of four numbers [x1, y1, x2, y2], not '10, 5, 30, 25'"),
        ([10, None, 30, 25], "bbox_2d must hold four numbers, not [10, None, 30, 25]"),
        ([10, float("nan"), 30, 25], "bbox_2d must hold four numbers, not [10, nan, 30, 25]"),
        ([True, 0, 1, 1], "bbox_2d must hold four numbers, not [True, 0, 1, 1]"),
        ([30, 5, 10, 25], "bbox_2d [30, 5, 10, 25] has no area: x2 must be greater than x1 and y2 greater than y1"),
        ([10, 5, 10, 25], "bbox_2d [10, 5, 10, 25] has no area: x2 must be greater than x1 and y2 greater than y1"),
        (
            [0.5, 0.5, 0.5, 0.9],
            "bbox_2d [0.5, 0.5, 0.5, 0.9] has no area: x2 must be greater than x1 and y2 greater than y1",
        ),
        ([200, 10, 300, 20], "bbox_2d [200, 10, 300, 20] lies entirely outside the image, which is 100x50 pixels"),
        ([-30, -30, -10, -10], "bbox_2d [-30, -30, -10, -10] lies entirely outside the image, which is 100x50 pixels"),
    ],
)
def test_resolve_bbox(bbox: object, resolved: tuple[int, int, int, int] | str) -> None:
    assert resolve_bbox(bbox, 100, 50) == resolved


def test_crop_image_cuts_the_resolved_region_or_explains() -> None:
    image = gradient_image(64, 48)
    cropped, box, error = crop_image(image, [0.5, 0.5, 1.0, 1.0])
    assert error is None and cropped is not None and box == (32, 24, 64, 48)
    np.testing.assert_array_equal(np.asarray(cropped), np.asarray(image)[24:48, 32:64])
    cropped, box, error = crop_image(image, [5, 5, 5, 5])
    assert cropped is None and box is None and error is not None and "has no area" in error


# ---------------------------------------------------------------------------------------------- observations
def test_a_result_with_text_and_images_is_one_tool_message() -> None:
    outcome = ToolOutcome(action=0, status="ok", stdout="size (48, 64)\n", image_indices=[1, 2])
    assert CV.render_observation([outcome], []) == [
        Message(
            role="tool",
            content=[
                TextPart(text="size (48, 64)\nImage 1: "),
                ImagePart(index=1),
                TextPart(text="\nImage 2: "),
                ImagePart(index=2),
                TextPart(text="\n" + CV_CONTINUE),
            ],
        )
    ]


def test_errors_warnings_and_issues_are_rendered_in_order() -> None:
    outcome = ToolOutcome(
        action=0,
        status="error",
        stdout="before\n",
        stderr="DeprecationWarning: old\n",
        error="Traceback (most recent call last):\n  line 2\nZeroDivisionError: division by zero",
        warnings=["display() skipped an empty image (0x0)"],
    )
    (message,) = CV.render_observation([outcome], ["You made 2 calls in one turn; ..."])
    assert message.role == "tool" and message.image_indices == []
    assert message.text == (
        "before\n"
        "stderr:\nDeprecationWarning: old\n"
        "Error: Traceback (most recent call last):\n  line 2\nZeroDivisionError: division by zero\n"
        "Warning: display() skipped an empty image (0x0)\n"
        "Problems with your last reply:\n- You made 2 calls in one turn; ...\n" + CV_CONTINUE
    )


def test_a_crashed_session_is_reported_with_the_runners_words() -> None:
    crash = ToolOutcome(action=0, status="crashed", error="the session crashed and was restarted; variables are gone")
    assert CV.render_observation([crash], []) == [
        Message.of("tool", "Error: the session crashed and was restarted; variables are gone\n" + CV_CONTINUE)
    ]


def test_a_failure_without_an_error_message_still_says_it_failed() -> None:
    (message,) = CV.render_observation([ToolOutcome(action=0, status="timeout")], [])
    assert message.text == "Error: the call did not complete (status: timeout)\n" + CV_CONTINUE


def test_a_silent_success_says_there_was_no_output() -> None:
    (message,) = CV.render_observation([ToolOutcome(action=0, status="ok")], [])
    assert message.text == f"{NO_OUTPUT}\n{CV_CONTINUE}"


def test_long_tool_text_is_cut_in_the_middle() -> None:
    stdout = "".join(f"line {i}\n" for i in range(5000))
    (message,) = CV.render_observation([ToolOutcome(action=0, status="ok", stdout=stdout, image_indices=[3])], [])
    text = message.text
    assert "characters omitted" in text and text.startswith("line 0\n") and "line 4999\nImage 3: " in text
    assert len(text) < MAX_OBSERVATION_CHARS + 200 and message.image_indices == [3]


def test_issues_alone_come_back_as_a_user_message() -> None:
    assert CV.render_observation([], ["Your <tool_call> is not valid JSON."]) == [
        Message.of("user", "Problems with your last reply:\n- Your <tool_call> is not valid JSON.\n" + CV_CONTINUE)
    ]
    assert TAGS.render_observation([], ["a", "b"]) == [
        Message.of("user", "Problems with your last reply:\n- a\n- b\n" + TAGS_CONTINUE)
    ]
    assert CV.render_observation([], []) == []


def test_code_tags_results_come_back_in_sandbox_output_in_a_user_message() -> None:
    outcome = ToolOutcome(action=0, status="ok", stdout="42\n", image_indices=[4])
    assert TAGS.render_observation([outcome], ["x"]) == [
        Message(
            role="user",
            content=[
                TextPart(text="<sandbox_output>\n42\nImage 4: "),
                ImagePart(index=4),
                TextPart(text="\n</sandbox_output>\nProblems with your last reply:\n- x\n" + TAGS_CONTINUE),
            ],
        )
    ]


def test_crop_results_are_tool_messages_with_the_crop() -> None:
    ok = ToolOutcome(action=0, status="ok", image_indices=[1])
    bad = ToolOutcome(action=0, status="error", error="bbox_2d [5, 5, 5, 5] has no area")
    hint = "Continue: call image_zoom_in_tool again if you need to, or give your final answer in <answer></answer>."
    assert CROP.render_observation([ok], []) == [Message.of("tool", "Image 1: ", 1, "\n" + hint)]
    assert CROP.render_observation([bad], []) == [
        Message.of("tool", f"Error: bbox_2d [5, 5, 5, 5] has no area\n{hint}")
    ]


# ---------------------------------------------------------------------------------------------- helpers
def test_split_think() -> None:
    assert split_think("<think>a</think>b<think>c</think>d") == ("b\nd", "a\nc")
    assert split_think("x<think>a<think>b</think>y</think>") == ("x\ny</think>", "a<think>b")
    assert split_think("a</think>b") == ("b", "a")
    assert split_think("<think>never closed <answer>1</answer>") == ("<think>never closed <answer>1</answer>", "")


def test_only_a_leading_fence_is_stripped() -> None:
    assert clean_code('print("```")') == 'print("```")'
    assert clean_code("\n```py\n  x = 1\n```\ntrailing prose") == "x = 1"
    assert strip_fence('```json\n{"a": 1}```') == '{"a": 1}'


def test_json_indentation_is_kept_inside_strings() -> None:
    body = '\n  {"name": "code_image_tool", "arguments": {"code": "if True:\n  print(1)"}}\n'
    assert only_action(f"<tool_call>{body}</tool_call>").code == "if True:\n  print(1)"


@pytest.mark.parametrize("protocol", [CV, TAGS, CROP], ids=lambda p: p.name)
@pytest.mark.timeout(60)  # a quadratic parser would hang here (it once took 21 s); the limit only catches that
def test_degenerate_replies_never_raise_and_stay_fast(protocol: ToolProtocol) -> None:
    replies = [
        "<think>" * 20_000,
        "<tool_call>{" * 20_000,
        "<code>" * 20_000,
        "<tool_call></tool_call>" * 20_000,
        '<tool_call>{"a": ' + "[" * 100_000,
        "<tool_call>" + "\\" * 100_000,
        "```\n" * 50_000,
    ]
    for reply in replies:
        protocol.parse(reply)
