"""Tool schemas: reading them from a file, and turning them into the Python methods trainers derive them from.

A protocol's system prompt describes its tool, as in CodeVision's released data, so by default no
schema is rendered. A run can opt in (``--tools FILE`` or ``--tools protocol``): the schemas then
go to the chat template (local models) or to the server's ``tools`` field. Schemas are
OpenAI-style function schemas::

    {"type": "function", "function": {"name": ..., "description": ..., "parameters": {JSON schema}}}

TRL's GRPO trainer cannot be given schemas: it derives them from the methods of its environment
with transformers' ``get_json_schema``, which reads a method's name, type hints and Google-style
docstring. :func:`method_from_schema` writes such a method for a schema, so that the trainer
renders the schema an evaluation rendered; a schema that no method can reproduce is refused,
saying which part of it is lost. See docs/chat.md.
"""

from __future__ import annotations

import inspect
import json
import keyword
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional, Union

import yaml

if TYPE_CHECKING:
    from codevision.protocols.base import Protocol

#: What a method made by :func:`method_from_schema` calls: ``(the object it is called on, the tool's
#: name, the arguments given)``. Arguments left out are left out here too, so the tool applies its own
#: defaults.
ToolCallback = Callable[[Any, str, dict[str, Any]], Any]

#: OpenAI's rule for function names.
_FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_WRAPPER_KEYS = frozenset({"type", "function"})
_FUNCTION_KEYS = frozenset({"name", "description", "parameters"})
_YAML_SUFFIXES = frozenset({".yaml", ".yml"})
# Where transformers' docstring parser starts or ends a section, wherever the word stands.
_SECTION = re.compile(r"Args:|Returns:|Raises:")
_CHOICES = re.compile(r"\(choices:", re.IGNORECASE)
_SCALAR_HINTS: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "null": type(None),
    "array": list,
    "object": dict,
}
_JSON_TYPES = frozenset(_SCALAR_HINTS)
# The keys beside "type" that a container's type hint carries.
_CONTAINER_KEYS = {"array": frozenset({"items", "prefixItems"}), "object": frozenset({"additionalProperties"})}
_JSON_SCALAR_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}
# Names a TRL environment method cannot have: TRL skips private methods and calls these itself.
_RESERVED_METHODS = frozenset({"self", "reset", "get_reward"})


#: The ``--tools`` (and ``tools:`` setting) value that means the protocol's own schemas.
PROTOCOL_TOOLS = "protocol"


class ToolsFileError(ValueError):
    """A tools file that cannot be used; the message names the file and the entry or field at fault."""


class SchemaConversionError(ValueError):
    """A schema that no Python method reproduces through ``get_json_schema``; the message says which part."""


# ---------------------------------------------------------------------- reading and checking
def load_tools(path: str | Path) -> list[dict[str, Any]]:
    """The tool schemas in a JSON (or ``.yaml``/``.yml``) file: a list of schemas, one schema, or ``{"tools": [...]}``.

    The structure is checked strictly, because a mistake would otherwise surface as a prompt that
    silently lacks the tool, or as a server's rejection mid-run: :class:`ToolsFileError` names the
    file, the entry and the field.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ToolsFileError(f"{path} is not UTF-8 text (byte {exc.start + 1})") from None
    except OSError as exc:
        raise ToolsFileError(f"{path} cannot be read: {exc.strerror or type(exc).__name__}") from None
    data = _parse(text, path)
    entries = _entries(data, path)
    tools = [check_schema(entry, f"{path}: tools[{number}]") for number, entry in enumerate(entries)]
    names = [tool["function"]["name"] for tool in tools]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ToolsFileError(f"{path}: more than one tool is named {', '.join(map(repr, repeated))}; names must differ")
    return tools


def _parse(text: str, path: Path) -> Any:
    if path.suffix.lower() in _YAML_SUFFIXES:
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ToolsFileError(f"{path} is not valid YAML: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ToolsFileError(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno} "
            "(name the file .yaml to write it in YAML)"
        ) from None


def _entries(data: Any, path: Path) -> list[Any]:
    """The list of schemas, whichever of the three accepted layouts the file uses."""
    if isinstance(data, dict) and "tools" in data:
        extra = sorted(set(data) - {"tools"}, key=str)
        if extra:
            raise ToolsFileError(f"{path}: {extra[0]!r} is not expected beside 'tools'; the file holds only 'tools'")
        data = data["tools"]
    elif isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise ToolsFileError(
            f'{path} must hold a list of tool schemas, one schema, or {{"tools": [...]}}, not {_kind(data)}'
        )
    if not data:
        raise ToolsFileError(f"{path} holds no tool schemas; add at least one")
    return data


def check_schema(schema: Any, where: str = "the tool") -> dict[str, Any]:
    """``schema`` if it is a well-formed function schema; :class:`ToolsFileError` naming ``where`` and the field."""
    if not isinstance(schema, dict):
        raise ToolsFileError(
            f'{where} must be an object {{"type": "function", "function": {{...}}}}, not {_kind(schema)}'
        )
    if "function" not in schema and "name" in schema:
        raise ToolsFileError(
            f'{where} lacks the wrapper: write it as {{"type": "function", "function": {{"name": ...}}}}'
        )
    _only(schema, _WRAPPER_KEYS, where)
    if schema.get("type") != "function":
        raise ToolsFileError(f'{where}.type must be "function", not {schema.get("type")!r}')
    function = schema.get("function")
    if not isinstance(function, dict):
        raise ToolsFileError(f"{where}.function must be an object with name, description and parameters")
    where = f"{where}.function"
    _only(function, _FUNCTION_KEYS, where)
    name = function.get("name")
    if name is None:
        raise ToolsFileError(f"{where}.name is missing; every tool needs the name the model calls it by")
    if not isinstance(name, str) or not _FUNCTION_NAME.fullmatch(name):
        raise ToolsFileError(f"{where}.name must be 1 to 64 letters, digits, _ or -, not {name!r}")
    if "description" in function and not isinstance(function["description"], str):
        raise ToolsFileError(f"{where}.description must be a string, not {_kind(function['description'])}")
    if "parameters" in function:
        _check_parameters(function["parameters"], f"{where}.parameters")
    return schema


def _check_parameters(parameters: Any, where: str) -> None:
    if not isinstance(parameters, dict) or parameters.get("type") != "object":
        raise ToolsFileError(
            f'{where} must be a JSON schema of type "object" ({{"type": "object", "properties": ...}})'
        )
    properties = parameters.get("properties", {})
    if not isinstance(properties, dict):
        raise ToolsFileError(f"{where}.properties must map each argument name to its schema, not {_kind(properties)}")
    for name, prop in properties.items():
        if not isinstance(name, str):
            raise ToolsFileError(f"{where}.properties has the name {name!r}; argument names are strings")
        if not isinstance(prop, dict):
            raise ToolsFileError(f"{where}.properties.{name} must be a JSON schema object, not {_kind(prop)}")
        types = prop.get("type", [])
        unknown = [
            t for t in (types if isinstance(types, list) else [types]) if not isinstance(t, str) or t not in _JSON_TYPES
        ]
        if unknown:
            raise ToolsFileError(
                f"{where}.properties.{name}.type {unknown[0]!r} is not a JSON type; use one of {sorted(_JSON_TYPES)}"
            )
    required = parameters.get("required", [])
    if not isinstance(required, list) or not all(isinstance(item, str) for item in required):
        raise ToolsFileError(f"{where}.required must be a list of argument names")
    missing = [item for item in required if item not in properties]
    if missing:
        raise ToolsFileError(f"{where}.required names {missing[0]!r}, which is not among its properties")
    if len(set(required)) != len(required):
        raise ToolsFileError(f"{where}.required names an argument twice")


def _only(mapping: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(mapping) - allowed, key=str)
    if unknown:
        raise ToolsFileError(f"{where} has {unknown[0]!r}, which is not expected; the keys are {sorted(allowed)}")


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), repr(value))


def tools_from_protocol(protocol: Protocol, call: ToolCallback) -> list[Callable[..., Any]]:
    """One method per schema of ``protocol`` (see :func:`method_from_schema`), each calling ``call``."""
    return [method_from_schema(schema, call) for schema in protocol.tool_schemas()]


def template_renders_tools(processor: Any, chat_template: str, tools: Sequence[Mapping[str, Any]]) -> bool:
    """Whether ``chat_template`` prints ``tools`` at all; codevision's shipped Qwen-VL template, for one, does not."""
    chat = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]

    def render(given: Sequence[Mapping[str, Any]] | None) -> str:
        text: str = processor.apply_chat_template(
            chat, tools=given, chat_template=chat_template, add_generation_prompt=True, tokenize=False
        )
        return text

    return render([dict(tool) for tool in tools]) != render(None)


# ---------------------------------------------------------------------- schema -> method
class _NotGiven:
    """The default of an optional argument: the method passes on only the arguments it was given."""

    def __repr__(self) -> str:
        return "<not given>"


_NOT_GIVEN = _NotGiven()


def method_from_schema(
    schema: Mapping[str, Any], call: ToolCallback, *, check_arguments: bool = True
) -> Callable[..., Any]:
    """A function whose name, signature and docstring make ``transformers.utils.get_json_schema`` return ``schema``.

    Its first parameter is ``self`` (which ``get_json_schema`` skips), so it can be set on a class, as
    TRL's GRPO ``environment_factory`` expects, and read through an instance or on its own. Called
    with keyword arguments, it checks them against its signature (a wrong call raises ``TypeError``,
    which TRL hands back to the model) and returns ``call(self, name, arguments)``. Without
    ``check_arguments`` every argument the model wrote is passed on, for a ``call`` that answers
    wrong calls itself.

    Expressible: string, integer, number, boolean, null, array (with ``items`` or ``prefixItems``),
    object (with ``additionalProperties``), a list of types, ``anyOf``, ``nullable``, ``enum``, and
    required or optional arguments, each with a one-line description. Anything ``get_json_schema``
    cannot write (``minimum``, ``default``, ``format``, nested ``properties``, ...) is refused with
    :class:`SchemaConversionError` naming the tool and the field; the result equals ``schema`` as a
    dict, and its keys come in ``get_json_schema``'s order.
    """
    check_schema(schema, "the schema")
    function = schema["function"]
    name = function["name"]
    where = f"tool {name!r}"
    _check_method_name(name, where)
    description = _function_description(function.get("description"), where)
    parameters = function.get("parameters")
    if parameters is None:
        raise SchemaConversionError(
            f'{where} has no parameters; get_json_schema always writes them: add "parameters": '
            '{"type": "object", "properties": {}}'
        )
    properties, required = _parameters(parameters, f"{where}: parameters")
    arguments = [_argument(arg, prop, f"{where}: parameters.properties.{arg}") for arg, prop in properties.items()]
    hints = {arg: hint for arg, hint, _ in arguments}
    order = [*required, *(arg for arg in properties if arg not in required)]
    signature = inspect.Signature(
        [
            inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
            *(
                inspect.Parameter(
                    arg,
                    inspect.Parameter.KEYWORD_ONLY,
                    annotation=hints[arg],
                    default=inspect.Parameter.empty if arg in required else _NOT_GIVEN,
                )
                for arg in order
            ),
        ]
    )

    def method(self: Any, **given: Any) -> Any:
        if not check_arguments:
            return call(self, name, given)
        bound = signature.bind(self, **given)
        passed = {key: value for key, value in bound.arguments.items() if key != "self"}
        return call(self, name, passed)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = _docstring(description, [(arg, text) for arg, _, text in arguments])
    method.__signature__ = signature  # type: ignore[attr-defined]
    method.__annotations__ = hints
    return method


def _check_method_name(name: str, where: str) -> None:
    if not name.isidentifier() or keyword.iskeyword(name):
        raise SchemaConversionError(f"{where}: a Python method cannot be named {name!r}; rename the tool")
    if name.startswith("_") or name in _RESERVED_METHODS:
        raise SchemaConversionError(
            f"{where}: TRL environments skip methods named with a leading _ and call reset/get_reward "
            "themselves; rename the tool"
        )


def _function_description(description: Any, where: str) -> str:
    """The description, if ``get_json_schema`` reads it back unchanged from a docstring."""
    if not isinstance(description, str) or not description.strip():
        raise SchemaConversionError(f"{where} has no description; get_json_schema always writes one: add it")
    if description != description.strip() or "\t" in description:
        raise SchemaConversionError(
            f"{where}: the description starts or ends with whitespace or holds a tab, which a docstring loses"
        )
    section = _SECTION.search(description)
    if section:
        raise SchemaConversionError(
            f"{where}: the description holds {section.group()!r}, where a docstring section starts; reword it"
        )
    if any(line[:1].isspace() for line in description.splitlines()[1:] if line.strip()):
        raise SchemaConversionError(f"{where}: a line of the description is indented, which a docstring loses")
    return description


def _parameters(parameters: Mapping[str, Any], where: str) -> tuple[dict[str, Any], list[str]]:
    unknown = sorted(set(parameters) - {"type", "properties", "required"})
    if unknown:
        raise SchemaConversionError(f"{where}.{unknown[0]} cannot be expressed by a Python signature; remove it")
    if "properties" not in parameters:
        raise SchemaConversionError(f'{where} has no properties; get_json_schema always writes them: add "properties"')
    properties = dict(parameters["properties"])
    required = list(parameters.get("required", []))
    if "required" in parameters and not required:
        raise SchemaConversionError(f"{where}.required is empty; get_json_schema leaves it out then: remove it")
    return properties, required


def _argument(name: str, schema: Mapping[str, Any], where: str) -> tuple[str, Any, str]:
    """``(name, type hint, docstring text)`` of one argument."""
    if not name.isidentifier() or keyword.iskeyword(name) or name in ("self", "cls"):
        raise SchemaConversionError(f"{where}: a Python parameter cannot be named {name!r}; rename the argument")
    description = schema.get("description")
    if not isinstance(description, str) or not description.strip():
        raise SchemaConversionError(f"{where} has no description; get_json_schema always writes one: add it")
    problem = _argument_text_problem(description)
    if problem:
        raise SchemaConversionError(f"{where}.description {problem}")
    body = {key: value for key, value in schema.items() if key not in ("description", "enum")}
    text = description
    if "enum" in schema:
        text = f"{description} (choices: {_choices(schema['enum'], f'{where}.enum')})"
    return name, _hint(body, where), text


def _argument_text_problem(description: str) -> str | None:
    """What a docstring's Args line would change in ``description``, if anything."""
    if "\n" in description or "\r" in description:
        return "spans several lines, which a docstring joins into one; write it on one line"
    if description != description.strip():
        return "starts or ends with whitespace, which a docstring loses"
    if _SECTION.search(description) or _CHOICES.search(description):
        return "holds a docstring keyword (Args:, Returns:, Raises: or (choices:); reword it"
    return None


def _choices(values: Any, where: str) -> str:
    if not isinstance(values, list) or not values:
        raise SchemaConversionError(f"{where} must be a non-empty list of values")
    if any(isinstance(value, str) and value != value.strip() for value in values):
        raise SchemaConversionError(f"{where}: a value starts or ends with whitespace, which get_json_schema strips")
    return json.dumps(values, ensure_ascii=False)


def _hint(schema: Mapping[str, Any], where: str) -> Any:
    """The type hint ``get_json_schema`` turns into ``schema`` (``description`` and a top-level ``enum`` aside)."""
    schema = dict(schema)
    nullable = schema.pop("nullable", None)
    if nullable not in (None, True):
        raise SchemaConversionError(f"{where}.nullable can only be true (or absent)")
    hint = _plain_hint(schema, where)
    return Optional[hint] if nullable else hint  # noqa: UP045 - a runtime type object, not an annotation


def _plain_hint(schema: dict[str, Any], where: str) -> Any:
    if not schema:
        return Any
    if "anyOf" in schema:
        return _union(schema, where)
    kind = schema.get("type")
    if isinstance(kind, list):
        return _type_list(schema, where)
    if kind not in _SCALAR_HINTS:
        raise SchemaConversionError(f"{where}.type must be one of {sorted(_SCALAR_HINTS)} (or a list), not {kind!r}")
    if "enum" in schema:
        return _literal(schema, where)
    extra = sorted(set(schema) - {"type"} - _CONTAINER_KEYS.get(kind, frozenset()))
    if extra or {"items", "prefixItems"} <= set(schema):
        raise SchemaConversionError(
            f"{where}.{(extra or ['prefixItems'])[0]} cannot be expressed by a Python type hint, so get_json_schema "
            "would leave it out"
        )
    if "items" in schema:
        return list[_hint(schema["items"], f"{where}.items")]  # type: ignore[misc]
    if "prefixItems" in schema:
        return _tuple(schema["prefixItems"], f"{where}.prefixItems")
    if "additionalProperties" in schema:
        values = schema["additionalProperties"]
        if not isinstance(values, dict):
            raise SchemaConversionError(f"{where}.additionalProperties must be a schema, not {values!r}")
        return dict[str, _hint(values, f"{where}.additionalProperties")]  # type: ignore[misc]
    return _SCALAR_HINTS[kind]


def _union(schema: dict[str, Any], where: str) -> Any:
    extra = sorted(set(schema) - {"anyOf"})
    if extra:
        raise SchemaConversionError(f"{where}.{extra[0]} cannot stand beside anyOf in a Python type hint")
    members = schema["anyOf"]
    if not isinstance(members, list) or len(members) < 2:
        raise SchemaConversionError(f"{where}.anyOf must list at least two schemas")
    hints = []
    for number, member in enumerate(members):
        place = f"{where}.anyOf[{number}]"
        if (
            not isinstance(member, dict)
            or not isinstance(member.get("type"), str)
            or {"anyOf", "nullable"} & set(member)
        ):
            raise SchemaConversionError(
                f"{place} must have one type and no anyOf or nullable, which a Python union would merge into its own"
            )
        if member == {"type": "null"}:
            raise SchemaConversionError(f'{place}: write a null member as "nullable": true on the union')
        hints.append(_hint(member, place))
    if len(set(map(repr, hints))) != len(hints):
        raise SchemaConversionError(f"{where}.anyOf lists the same schema twice")
    if all(set(member) == {"type"} and isinstance(member["type"], str) for member in members):
        raise SchemaConversionError(f'{where}.anyOf of plain types is written as a type list: use "type": [...]')
    return Union[tuple(hints)]  # noqa: UP007 - a runtime type object, not an annotation


def _type_list(schema: dict[str, Any], where: str) -> Any:
    kinds = schema["type"]
    extra = sorted(set(schema) - {"type"})
    if extra:
        raise SchemaConversionError(f"{where}.{extra[0]} cannot stand beside a list of types in a Python type hint")
    if not all(kind in _SCALAR_HINTS for kind in kinds):
        raise SchemaConversionError(f"{where}.type lists a name that is not a JSON type: {kinds!r}")
    if len(kinds) < 2 or "null" in kinds or kinds != sorted(set(kinds)):
        raise SchemaConversionError(
            f'{where}.type: list at least two types, sorted, without null (mark that with "nullable": true)'
        )
    return Union[tuple(_SCALAR_HINTS[kind] for kind in kinds)]  # noqa: UP007 - a runtime type object


def _literal(schema: dict[str, Any], where: str) -> Any:
    values = schema["enum"]
    extra = sorted(set(schema) - {"type", "enum"})
    if extra:
        raise SchemaConversionError(f"{where}.{extra[0]} cannot stand beside enum in a Python type hint")
    if not isinstance(values, list) or not values or any(type(value) not in _JSON_SCALAR_NAMES for value in values):
        raise SchemaConversionError(f"{where}.enum must list strings, numbers, booleans or null")
    if len({(type(value), value) for value in values}) != len(values):
        raise SchemaConversionError(f"{where}.enum lists a value twice")
    kinds = list(dict.fromkeys(_JSON_SCALAR_NAMES[type(value)] for value in values))
    expected = kinds[0] if len(kinds) == 1 else kinds
    if schema["type"] != expected:
        raise SchemaConversionError(f"{where}.type must be {expected!r}, the types of its enum values in order")
    return Literal[tuple(values)]


def _tuple(items: Any, where: str) -> Any:
    if not isinstance(items, list) or len(items) < 2:
        raise SchemaConversionError(f"{where} must list at least two schemas (use items for one)")
    return tuple[tuple(_hint(item, f"{where}[{number}]") for number, item in enumerate(items))]  # type: ignore[misc]


def _docstring(description: str, arguments: list[tuple[str, str]]) -> str:
    """A Google-style docstring, unindented so that ``inspect.getdoc`` returns it as written."""
    if not arguments:
        return description
    return description + "\n\nArgs:\n" + "\n".join(f"    {name}: {text}" for name, text in arguments)
