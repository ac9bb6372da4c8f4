"""Tool schemas: each protocol's matches its parser, tools files are checked strictly, and the methods
written for TRL give back the schema through transformers' ``get_json_schema``."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest

from codevision.chat.tools import (
    SchemaConversionError,
    ToolsFileError,
    load_tools,
    method_from_schema,
    tools_from_protocol,
)
from codevision.policies.openai import with_tool_calls
from codevision.protocols import PROTOCOLS, get_protocol
from codevision.protocols.toolcalls import HermesProtocol
from codevision.trajectory import Action

TOOL_PROTOCOLS = [get_protocol("codevision"), get_protocol("crop")]
# A value of each JSON type the protocols' arguments use, and one of the wrong type.
GOOD = {"string": "upright = image.rotate(90, expand=True)\ndisplay(upright)", "integer": 1, "array": [10, 20, 60, 80]}
BAD = {"string": 5, "integer": "first", "array": "the top left"}


def schema_call(schema: dict[str, Any], arguments: dict[str, Any]) -> str:
    return f"<tool_call>{json.dumps({'name': schema['function']['name'], 'arguments': arguments})}</tool_call>"


def example_arguments(schema: dict[str, Any], names: list[str] | None = None) -> dict[str, Any]:
    properties = schema["function"]["parameters"]["properties"]
    return {name: GOOD[properties[name]["type"]] for name in (names if names is not None else properties)}


def record(owner: Any, name: str, arguments: dict[str, Any]) -> tuple[Any, str, dict[str, Any]]:
    return owner, name, arguments


# ---------------------------------------------------------------------- the protocols' schemas
def test_each_protocol_declares_exactly_its_function_tools() -> None:
    for name, protocol_class in PROTOCOLS.items():
        schemas = protocol_class().tool_schemas()
        if issubclass(protocol_class, HermesProtocol):
            assert [s["function"]["name"] for s in schemas] == [protocol_class.tool_name], name
        else:
            assert schemas == [], f"{name} has no function tool (code-tags calls are <code> blocks)"


@pytest.mark.parametrize("protocol", TOOL_PROTOCOLS, ids=lambda p: p.name)
def test_a_call_built_from_the_schema_parses_into_an_action(protocol: HermesProtocol) -> None:
    (schema,) = protocol.tool_schemas()
    required = schema["function"]["parameters"]["required"]
    for arguments in (example_arguments(schema), example_arguments(schema, required)):
        turn = protocol.parse(f"<think>Look closer.</think>{schema_call(schema, arguments)}")
        assert not turn.issues and turn.answer is None, turn
        (action,) = turn.actions
        assert action.image_index == arguments.get("image_index", 0)
        assert (action.code or action.bbox) is not None


@pytest.mark.parametrize("protocol", TOOL_PROTOCOLS, ids=lambda p: p.name)
def test_every_argument_the_schema_declares_is_read_and_the_required_ones_are_needed(protocol: HermesProtocol) -> None:
    (schema,) = protocol.tool_schemas()
    parameters = schema["function"]["parameters"]
    for name, prop in parameters["properties"].items():
        wrong = {**example_arguments(schema), name: BAD[prop["type"]]}
        turn = protocol.parse(schema_call(schema, wrong))
        assert not turn.actions and len(turn.issues) == 1 and name in turn.issues[0], (name, turn)
    for name in parameters["required"]:
        partial = {key: value for key, value in example_arguments(schema).items() if key != name}
        turn = protocol.parse(schema_call(schema, partial))
        assert not turn.actions and turn.issues, (name, turn)


def test_schemas_are_fresh_copies() -> None:
    protocol = get_protocol("crop")
    protocol.tool_schemas()[0]["function"]["parameters"]["properties"].clear()
    assert "bbox_2d" in protocol.tool_schemas()[0]["function"]["parameters"]["properties"]


# ---------------------------------------------------------------------- tools files
SCHEMA = get_protocol().tool_schemas()[0]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("list.json", json.dumps([SCHEMA])),
        ("one.json", json.dumps(SCHEMA)),
        ("wrapped.json", json.dumps({"tools": [SCHEMA]})),
        ("list.yaml", "- " + json.dumps(SCHEMA)),
    ],
)
def test_a_tools_file_in_each_layout_gives_the_schemas_as_written(tmp_path: Path, name: str, content: str) -> None:
    (tmp_path / name).write_text(content)
    tools = load_tools(tmp_path / name)
    assert tools == [SCHEMA]
    assert json.dumps(tools) == json.dumps([SCHEMA]), "key order is what a template renders"


def _named(function: dict[str, Any]) -> str:
    return json.dumps([{"type": "function", "function": function}])


PARAMETERS = SCHEMA["function"]["parameters"]
BAD_FILES = [
    ("absent.json", None, "cannot be read"),
    ("prose.json", "code_image_tool(code)", "not valid JSON: Expecting value at line 1, column 1"),
    ("latin1.json", b"[\xe9]", "not UTF-8"),
    ("broken.yaml", "tools: [", "not valid YAML"),
    ("number.json", "3", "must hold a list of tool schemas"),
    ("empty.json", "[]", "holds no tool schemas"),
    ("extra.json", json.dumps({"tools": [SCHEMA], "version": 1}), "'version' is not expected"),
    ("bare.json", json.dumps([SCHEMA["function"]]), "tools[0] lacks the wrapper"),
    ("kind.json", json.dumps([{"type": "tool", "function": SCHEMA["function"]}]), 'tools[0].type must be "function"'),
    ("noname.json", _named({"description": "d", "parameters": PARAMETERS}), "tools[0].function.name is missing"),
    ("badname.json", _named({"name": "run code", "parameters": PARAMETERS}), "tools[0].function.name must be"),
    ("strict.json", _named({**SCHEMA["function"], "strict": True}), "tools[0].function has 'strict'"),
    ("params.json", _named({"name": "f", "parameters": {"type": "array"}}), "tools[0].function.parameters must be"),
    (
        "proptype.json",
        _named({"name": "f", "parameters": {"type": "object", "properties": {"code": {"type": "text"}}}}),
        "tools[0].function.parameters.properties.code.type 'text' is not a JSON type",
    ),
    (
        "required.json",
        _named({"name": "f", "parameters": {"type": "object", "properties": {}, "required": ["code"]}}),
        "tools[0].function.parameters.required names 'code'",
    ),
    ("twice.json", json.dumps([SCHEMA, SCHEMA]), "more than one tool is named 'code_image_tool'"),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD_FILES, ids=[case[0] for case in BAD_FILES])
def test_a_bad_tools_file_names_the_file_and_the_field(tmp_path: Path, name: str, content: Any, message: str) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ToolsFileError) as caught:
        load_tools(path)
    assert str(path) in str(caught.value) and message in str(caught.value), caught.value
    assert isinstance(caught.value, ValueError)


# ---------------------------------------------------------------------- schema -> method -> schema
def tool(name: str, description: str, properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


HAND_WRITTEN = [
    tool("ping", "Check that the tool answers.", {}),
    tool(
        "rotate",
        "Rotate an image.\n\nThe angle is counter-clockwise.",
        {
            "degrees": {"type": "integer", "enum": [90, 180, 270], "description": "How far to turn."},
            "expand": {"type": "boolean", "description": "Grow the canvas to fit."},
            "mode": {"type": "string", "enum": ["nearest", "bicubic"], "description": "Resampling filter."},
        },
        ["degrees"],
    ),
    tool(
        "annotate",
        "Draw labelled boxes.",
        {
            "boxes": {
                "type": "array",
                "items": {"type": "array", "items": {"type": "number"}},
                "description": "Boxes.",
            },
            "labels": {"type": "object", "additionalProperties": {"type": "string"}, "description": "By box id."},
            "size": {
                "type": "array",
                "prefixItems": [{"type": "integer"}, {"type": "integer"}],
                "description": "W, H.",
            },
            "color": {"type": ["integer", "string"], "description": "A name or a packed RGB value."},
            "note": {"type": "string", "nullable": True, "description": "Free text, or null."},
            "shape": {
                "anyOf": [
                    {"type": "string", "enum": ["box", "ellipse"]},
                    {"type": "array", "items": {"type": "number"}},
                ],
                "nullable": True,
                "description": "A named shape or a polygon.",
            },
            "weight": {"type": "number", "enum": [1, 2.5], "description": "Line width."},
            "extra": {"description": "Anything else."},
        },
        ["labels", "boxes"],
    ),
]
ROUND_TRIP = [*(protocol.tool_schemas()[0] for protocol in TOOL_PROTOCOLS), *HAND_WRITTEN]


@pytest.mark.parametrize("schema", ROUND_TRIP, ids=lambda s: s["function"]["name"])
def test_get_json_schema_of_the_method_is_the_schema(schema: dict[str, Any]) -> None:
    utils = pytest.importorskip("transformers.utils", reason="get_json_schema comes with transformers")
    method = method_from_schema(schema, record)
    assert utils.get_json_schema(method) == schema

    class Environment:  # as TRL's GRPO environment_factory finds its tools: functions defined on the class
        def reset(self, **row: Any) -> None:
            return None

    setattr(Environment, method.__name__, method)
    environment = Environment()
    found = [name for name, _ in inspect.getmembers(Environment, predicate=inspect.isfunction) if name != "reset"]
    assert found == [schema["function"]["name"]]
    assert utils.get_json_schema(getattr(environment, found[0])) == schema


@pytest.mark.parametrize("protocol", TOOL_PROTOCOLS, ids=lambda p: p.name)
def test_the_protocols_schemas_come_back_in_get_json_schemas_key_order(protocol: HermesProtocol) -> None:
    utils = pytest.importorskip("transformers.utils", reason="get_json_schema comes with transformers")
    (method,) = tools_from_protocol(protocol, record)
    # The order a chat template prints, so TRL's environment and an evaluation render the same text.
    assert json.dumps(utils.get_json_schema(method)) == json.dumps(protocol.tool_schemas()[0])


def test_a_method_forwards_the_arguments_it_was_given_and_refuses_a_wrong_call() -> None:
    (method,) = tools_from_protocol(get_protocol(), record)
    owner = object()
    assert method(owner, code="print(1)") == (owner, "code_image_tool", {"code": "print(1)"})
    assert method(owner, code="x", image_index=2)[2] == {"code": "x", "image_index": 2}
    with pytest.raises(TypeError, match="code"):
        method(owner, image_index=1)
    with pytest.raises(TypeError, match="colour"):
        method(owner, code="x", colour="red")


def test_a_protocol_action_can_be_rebuilt_from_a_call_routed_through_the_method() -> None:
    """What an environment does: the method's arguments, as a call the protocol reads."""
    protocol = get_protocol("crop")

    def to_action(owner: Any, name: str, arguments: dict[str, Any]) -> Action:
        (action,) = protocol.parse(
            f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"
        ).actions
        return action

    (method,) = tools_from_protocol(protocol, to_action)
    action = method(None, bbox_2d=[0, 0, 0.5, 0.5])
    assert (action.kind, action.bbox, action.image_index) == ("crop", [0.0, 0.0, 0.5, 0.5], 0)


UNREPRODUCIBLE = [
    (tool("run-code", "Run.", {}), "cannot be named 'run-code'"),
    (tool("_hidden", "Run.", {}), "leading _"),
    (tool("reset", "Run.", {}), "reset/get_reward"),
    ({"type": "function", "function": {"name": "f", "parameters": PARAMETERS}}, "has no description"),
    (tool("f", "Run code. Args: none", {}), "'Args:'"),
    (tool("f", "Run code.\n  indented", {}), "indented"),
    ({"type": "function", "function": {"name": "f", "description": "d"}}, "has no parameters"),
    (tool("f", "d", {"x": {"type": "integer"}}), "parameters.properties.x has no description"),
    (tool("f", "d", {"x": {"type": "integer", "description": "a\nb"}}), "spans several lines"),
    (tool("f", "d", {"x": {"type": "integer", "minimum": 0, "description": "n"}}), "properties.x.minimum"),
    (tool("f", "d", {"x": {"type": "integer", "default": 0, "description": "n"}}), "properties.x.default"),
    (
        tool("f", "d", {"x": {"type": "object", "properties": {}, "description": "n"}}),
        "properties.x.properties cannot be expressed",
    ),
    (tool("f", "d", {"x": {"type": ["string", "integer"], "description": "n"}}), "sorted"),
    (tool("f", "d", {"x": {"type": ["integer", "null"], "description": "n"}}), "nullable"),
    (
        tool("f", "d", {"x": {"anyOf": [{"type": "integer"}, {"type": "string"}], "description": "n"}}),
        'use "type": [...]',
    ),
    (tool("f", "d", {"x": {"type": "string", "enum": [" a"], "description": "n"}}), "whitespace"),
    (tool("f", "d", {"class": {"type": "string", "description": "n"}}), "cannot be named 'class'"),
]


@pytest.mark.parametrize(("schema", "message"), UNREPRODUCIBLE, ids=[m for _, m in UNREPRODUCIBLE])
def test_a_schema_no_method_reproduces_is_refused_naming_the_part(schema: dict[str, Any], message: str) -> None:
    with pytest.raises(SchemaConversionError) as caught:
        method_from_schema(schema, record)
    assert message in str(caught.value) and f"tool {schema['function']['name']!r}" in str(caught.value), caught.value


def test_required_must_be_left_out_when_empty() -> None:
    schema = tool("f", "d", {})
    schema["function"]["parameters"]["required"] = []
    with pytest.raises(SchemaConversionError, match="required is empty"):
        method_from_schema(schema, record)


# ---------------------------------------------------------------------- replies with parsed tool calls
@pytest.mark.parametrize("protocol", TOOL_PROTOCOLS, ids=lambda p: p.name)
def test_tool_calls_written_back_parse_into_the_action_the_raw_text_gives(protocol: HermesProtocol) -> None:
    (schema,) = protocol.tool_schemas()
    arguments = example_arguments(schema)
    call = json.dumps({"name": protocol.tool_name, "arguments": arguments})
    raw = f"<think>I will look.</think>\n<tool_call>\n{call}\n</tool_call>"
    content = raw[: raw.index("<tool_call>")]
    calls = [
        {"id": "c0", "type": "function", "function": {"name": protocol.tool_name, "arguments": json.dumps(arguments)}}
    ]
    rebuilt = with_tool_calls(content, calls)
    assert rebuilt == raw
    assert protocol.parse(rebuilt) == protocol.parse(raw)
    assert protocol.parse(with_tool_calls("", calls)).actions == protocol.parse(raw).actions


def test_written_back_calls_keep_their_order_and_bad_arguments_reach_the_protocol() -> None:
    protocol = get_protocol()
    first = {"function": {"name": "code_image_tool", "arguments": {"code": "print(1)"}}}
    second = {"function": {"name": "code_image_tool", "arguments": '{"code": "print(2)"'}}
    text = with_tool_calls("Two steps.", [first, second])
    assert text.startswith("Two steps.\n<tool_call>\n") and text.count("</tool_call>") == 2
    turn = protocol.parse(text)
    assert [action.code for action in turn.actions] == ["print(1)"] and "only the first" in turn.issues[0]
    assert "not valid JSON" in protocol.parse(with_tool_calls("", [second])).issues[0]
    with pytest.raises(ValueError, match=r"tool_calls\[0\] has no function name"):
        with_tool_calls("", [{"type": "function"}])
