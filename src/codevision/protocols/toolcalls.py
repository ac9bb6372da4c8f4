"""Reading tool calls out of model replies, and the parse routine the tool-using protocols share.

Real replies are messy: tags left open when generation stops, several calls in one turn, JSON with
raw newlines or Python quoting, code wrapped in Markdown fences, answers written while thinking.
Everything here repairs what can be repaired without guessing at the model's intent, and turns the
rest into short issues addressed to the model, so that a bad reply costs one turn, not the episode.
"""

from __future__ import annotations

import ast
import copy
import json
import math
import re
import textwrap
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_args, overload

from codevision.protocols.base import ParsedTurn, Protocol
from codevision.protocols.render import compose, issues_text, outcome_parts
from codevision.trajectory import Action, Message, Role, ToolOutcome

_THINK_TAG = re.compile(r"<(/?)think>", re.IGNORECASE)
_OPEN_FENCE = re.compile(r"\s*```[\w+.-]*[ \t]*(?:\n|$)")
_CLOSE_FENCE = re.compile(r"^[ \t]*```", re.MULTILINE)
_BARE_CODE = re.compile(r"```(?:python|py|json)?[ \t]*\n", re.IGNORECASE)
# Escapes JSON does not know (``\d`` in a regex, ``\s``, a lone ``\u``), doubled so they survive as text.
_BAD_ESCAPE = re.compile(r'\\(?![\\"/bfnrt]|u[0-9a-fA-F]{4})')
_ATTRIBUTE = re.compile(r"""([\w-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""")
_DECODER = json.JSONDecoder(strict=False)
_INTEGER = re.compile(r"\s*[+-]?\d+\s*")
#: How tool calls are read and answered: ``lenient`` repairs what it can and reports the rest to the model;
#: ``trl`` reads and answers them as TRL's GRPO tool loop does (see :meth:`HermesProtocol.parse`).
CallRules = Literal["lenient", "trl"]
CALL_RULES: tuple[str, ...] = get_args(CallRules)
#: The ``image_index`` argument every Hermes tool reads (see :func:`parse_image_index`), as a JSON schema.
IMAGE_INDEX_ARGUMENT: dict[str, Any] = {
    "type": "integer",
    "description": "The number of the image to use: the input images come first, then each image the tool "
    "returned (0 if omitted).",
}


@dataclass(frozen=True)
class Block:
    """One ``<tag>…</tag>`` span of a reply: its inner text, the whole span, and the opening tag's attributes."""

    body: str
    raw: str
    attributes: dict[str, str]
    start: int
    end: int


def split_think(text: str, *, unclosed_is_thought: bool = False) -> tuple[str, str]:
    """Split a reply into what it says outside ``<think>`` blocks and what it says inside them.

    A ``</think>`` before any ``<think>`` closes a thought the chat template opened before the
    reply began (Qwen3-style templates do this), so everything before it is thought. An unclosed
    ``<think>`` is left in the visible text: the model forgot to close it, and what follows is
    more likely its actual turn than a draft. ``unclosed_is_thought`` reads it as TRL's response
    template does instead: the rest of the reply is thought. One pass over the tags, so
    degenerate replies that repeat a tag thousands of times stay cheap.
    """
    visible: list[str] = []
    thoughts: list[str] = []
    position = 0
    opened: re.Match[str] | None = None
    for tag in _THINK_TAG.finditer(text):
        closing = tag.group(1) == "/"
        if opened is not None and closing:
            thoughts.append(text[opened.end() : tag.start()])
            position, opened = tag.end(), None
        elif opened is None and not closing:
            visible.append(text[position : tag.start()])
            opened = tag
        elif opened is None and position == 0 and not visible:
            thoughts.append(text[: tag.start()])
            position = tag.end()
    if opened is not None and unclosed_is_thought:
        thoughts.append(text[opened.end() :])
    else:
        visible.append(text[opened.start() if opened is not None else position :])
    return "\n".join(part for part in visible if part), "\n".join(thoughts)


def find_blocks(text: str, tag: str) -> list[Block]:
    """Every ``<tag>`` span in order; an unclosed one ends where the next one opens, or at the end.

    Generation often stops right after the call, before the closing tag is written, so an open tag
    at the end is as good as a closed one.
    """
    openers = list(re.finditer(rf"<{re.escape(tag)}(\s[^<>]*)?>", text, re.IGNORECASE))
    closers = list(re.finditer(rf"</{re.escape(tag)}\s*>", text, re.IGNORECASE))
    blocks: list[Block] = []
    next_close = 0
    for number, start in enumerate(openers):
        while next_close < len(closers) and closers[next_close].start() < start.end():
            next_close += 1
        close = closers[next_close] if next_close < len(closers) else None
        following = openers[number + 1].start() if number + 1 < len(openers) else len(text)
        if close is not None and close.start() < following:
            body_end, end = close.start(), close.end()
        else:
            body_end = end = following
        attributes = {
            m.group(1).lower(): next(g for g in m.groups()[1:] if g is not None)
            for m in _ATTRIBUTE.finditer(start.group(1) or "")
        }
        blocks.append(Block(text[start.end() : body_end], text[start.start() : end], attributes, start.start(), end))
    return blocks


def without_blocks(text: str, blocks: list[Block]) -> str:
    """The text between the blocks, so that what a call contains is not read as the model's prose."""
    edges = [0, *(edge for block in blocks for edge in (block.start, block.end)), len(text)]
    return "\n".join(text[edges[i] : edges[i + 1]] for i in range(0, len(edges), 2))


def strip_fence(text: str) -> str:
    """The text inside a leading Markdown fence (closed or not); text without one is returned as is.

    Only a fence at the very start counts, so code that merely contains three backticks in a
    string is left alone.
    """
    opening = _OPEN_FENCE.match(text)
    if opening is None:
        return text
    text = text[opening.end() :]
    closing = _CLOSE_FENCE.search(text)
    if closing is not None:
        return text[: closing.start()]
    return text.rstrip().removesuffix("```")


def clean_code(code: str) -> str:
    """Code ready to run: without the Markdown fence models add out of habit (even inside a JSON
    string or a ``<code>`` tag, where the fence lines would be syntax errors), dedented, and without
    surrounding blank lines."""
    return textwrap.dedent(strip_fence(code)).strip("\n").rstrip()


def has_bare_code(text: str) -> bool:
    """Whether the text holds a Markdown code block (python, json or unlabelled), i.e. code meant to run."""
    return _BARE_CODE.search(text) is not None


def load_json_object(text: str) -> dict[str, Any] | str:
    """The JSON object in ``text``, repaired where the intent is unambiguous, or a description of the problem.

    Accepted: raw newlines and tabs inside strings, a surrounding Markdown fence or prose, trailing
    text after the object, escapes JSON does not define (``\\d``), and Python literal syntax
    (single quotes, ``True``, triple-quoted strings). Missing closing braces are not added: a
    reply cut short must not run half its code.
    """
    text = strip_fence(text)
    start = text.find("{")
    if start < 0:
        return "there is no JSON object (it must start with {)"
    text = text[start:]
    first_error: json.JSONDecodeError | None = None
    for candidate in (text, _BAD_ESCAPE.sub(r"\\\\", text)):
        try:
            value, _ = _DECODER.raw_decode(candidate)
        except json.JSONDecodeError as exc:
            first_error = first_error or exc
            continue
        except RecursionError:
            return "it is nested too deeply"
        return value if isinstance(value, dict) else "expected a JSON object"
    try:
        value = ast.literal_eval(text[: text.rfind("}") + 1])
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        value = None
    if isinstance(value, dict):
        return value
    assert first_error is not None
    return _describe(first_error)


def _describe(error: json.JSONDecodeError) -> str:
    """Name a JSON error and show where it is, so the model can see which character to fix."""
    if error.pos >= len(error.doc.rstrip()):
        return "the JSON ends before every { and quote is closed"
    near = error.doc[max(0, error.pos - 20) : error.pos + 20].replace("\n", "\\n")
    return f"{error.msg} at line {error.lineno}, column {error.colno} (near `{near}`)"


def decode_hermes_call(body: str) -> tuple[str, dict[str, Any]] | str:
    """The tool name and arguments of one ``<tool_call>`` body, or what is wrong with it.

    Besides ``{"name", "arguments"}`` this accepts the variants models drift into: ``parameters``
    for ``arguments``, arguments encoded as a JSON string, an OpenAI-style ``{"function": {...}}``
    wrapper, and arguments placed beside ``name`` instead of under ``arguments``.
    """
    call = load_json_object(body)
    if isinstance(call, str):
        return f"is not valid JSON: {call}"
    if isinstance(call.get("function"), dict):
        call = call["function"]
    name = call.get("name")
    if not isinstance(name, str) or not name:
        return 'has no "name" naming the tool'
    arguments = call.get("arguments", call.get("parameters"))
    if arguments is None:
        arguments = {key: value for key, value in call.items() if key != "name"}
    if isinstance(arguments, str):
        arguments = load_json_object(arguments)
        if isinstance(arguments, str):
            return f'has "arguments" as a string that is not valid JSON: {arguments}'
    if not isinstance(arguments, dict):
        return 'needs "arguments" to be a JSON object'
    return name, arguments


def trl_tool_calls(visible: str, tag: str) -> list[tuple[str, object, str]] | None:
    """The calls TRL's Qwen response template reads from a reply's visible text: ``(name, arguments, raw)``.

    ``None`` when a call cannot be read, because TRL then reads the whole reply as text. TRL's rules:
    the tags are matched case-sensitively and must be closed; each body is one strict JSON object
    (``json.loads``: no raw newlines in strings, no trailing text); ``name`` must be a string; missing
    or null ``arguments`` are an empty object. The arguments are returned as written, since a call
    whose arguments are not an object is still a call TRL makes (and fails).
    """
    opener, closer = f"<{tag}>", f"</{tag}>"
    calls: list[tuple[str, object, str]] = []
    position = 0
    while (start := visible.find(opener, position)) >= 0:
        end = visible.find(closer, start + len(opener))
        if end < 0:
            return None
        body = visible[start + len(opener) : end]
        position = end + len(closer)
        try:
            call = json.loads(body)
        except (json.JSONDecodeError, RecursionError):
            return None
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            return None
        arguments = call.get("arguments")
        calls.append((call["name"], {} if arguments is None else arguments, visible[start:position]))
    return calls


@overload
def parse_image_index(value: object, default: int) -> int | str: ...
@overload
def parse_image_index(value: object, default: None) -> int | str | None: ...
def parse_image_index(value: object, default: int | None) -> int | str | None:
    """A valid image index (``default`` when absent; ``"1"`` and ``1.0`` are read as 1), or a message.

    Whether the index exists is only known when the call runs; here it must be a whole number ≥ 0.
    """
    if value is None:
        return default
    number: object = value
    if (isinstance(value, str) and _INTEGER.fullmatch(value)) or (
        isinstance(value, float) and math.isfinite(value) and value.is_integer()
    ):
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, int):
        return f"image_index must be a whole number such as 0 or 1, not {value!r}"
    if number < 0:
        return f"image_index must be 0 or more (images are numbered 0, 1, 2, ... in order), not {number}"
    return number


class ToolProtocol(Protocol):
    """A protocol whose replies carry tool calls in ``<call_tag>`` blocks and whose results come back as messages.

    Subclasses say how one call block becomes an action and word their prompts and hints; the rules
    for thinking, answers, call limits and the layout of observations are the same for all of them.
    """

    call_tag: ClassVar[str]
    #: Calls executed per turn; later ones are reported as ignored, because each call should be
    #: written after seeing the result of the previous one.
    max_calls_per_turn: ClassVar[int] = 1
    #: Role of the messages that carry tool results.
    observation_role: ClassVar[Role] = "tool"
    #: Issue for code written outside any call block.
    bare_code_hint: ClassVar[str]
    #: Closing instruction of every observation.
    continue_hint: ClassVar[str]

    @abstractmethod
    def read_call(self, block: Block) -> Action | str:
        """The action one call block asks for, or an issue explaining why it cannot run."""

    def initial_messages(self, question: str, image_indices: list[int]) -> list[Message]:
        """Like the base, but each input image is labelled with its index, which the tools address."""
        labelled: list[str | int] = []
        for index in image_indices:
            labelled += [f"Image {index}: ", index, "\n"]
        return [Message.of("system", self.system_prompt()), Message.of("user", *compose(*labelled, question))]

    def parse(self, text: str) -> ParsedTurn:
        visible, thoughts = split_think(text)
        blocks = find_blocks(visible, self.call_tag)
        prose = without_blocks(visible, blocks)
        turn = ParsedTurn()
        for block in blocks[: self.max_calls_per_turn]:
            read = self.read_call(block)
            if isinstance(read, str):
                turn.issues.append(read)
            else:
                turn.actions.append(read)
        if len(blocks) > self.max_calls_per_turn:
            allowed = (
                "only the first was"
                if self.max_calls_per_turn == 1
                else f"only the first {self.max_calls_per_turn} were"
            )
            turn.issues.append(
                f"You made {len(blocks)} calls in one turn; {allowed} considered and the rest were ignored. "
                "Decide each next call after seeing the result of the previous one."
            )
        answer = self.extract_answer(prose)
        if blocks:
            if answer is not None:
                turn.issues.append(
                    "Your answer was set aside because you gave it in the same turn as a call, before seeing "
                    "the result. Look at the result first, then give the final answer in <answer></answer>."
                )
            return turn
        turn.answer = answer if answer is not None else self.extract_answer(thoughts)
        if turn.answer is None:
            if find_blocks(thoughts, self.call_tag):
                turn.issues.append(
                    f"Your <{self.call_tag}> was inside <think></think>, so it was not run. Write it after </think>."
                )
            elif has_bare_code(prose):
                turn.issues.append(self.bare_code_hint)
        return turn

    def render_observation(self, outcomes: list[ToolOutcome], issues: list[str]) -> list[Message]:
        """One message per outcome in :attr:`observation_role`; issues and the closing instruction end the last.

        Issues without outcomes come back as a user message: no tool ran, so there is no tool result
        to attach them to.
        """
        if not outcomes and not issues:
            return []
        tail = compose(issues_text(issues), self.continue_hint)
        if not outcomes:
            return [Message.of("user", *tail)]
        bodies = [self.wrap_outcome(outcome_parts(outcome)) for outcome in outcomes]
        if self.observation_role == "user":
            return [Message.of("user", *compose(*(part for body in bodies for part in body), *tail))]
        bodies[-1] = compose(*bodies[-1], *tail)
        return [Message.of(self.observation_role, *body) for body in bodies]

    def wrap_outcome(self, parts: list[str | int]) -> list[str | int]:
        """Hook for protocols that enclose each result in markup; the default shows it as is."""
        return parts


class HermesProtocol(ToolProtocol):
    """A protocol with one named tool called as ``<tool_call>{"name": …, "arguments": {…}}</tool_call>``.

    Decoding, the tool name and ``image_index`` are checked here; subclasses read their own arguments.
    """

    call_tag: ClassVar[str] = "tool_call"
    tool_name: ClassVar[str]
    #: The call written out with placeholder arguments, shown whenever a call cannot be read.
    call_shape: ClassVar[str]
    #: What the tool does, for its function schema.
    tool_description: ClassVar[str]
    #: The JSON schemas of the arguments :meth:`build_action` reads; ``image_index`` is added to them.
    tool_arguments: ClassVar[dict[str, dict[str, Any]]]
    #: The arguments a call cannot do without.
    required_arguments: ClassVar[tuple[str, ...]]

    def __init__(self, *, system_prompt: str | None = None, calls: CallRules = "lenient") -> None:
        """``calls``: ``lenient`` (evaluation's default) or ``trl`` (the rules of TRL's tool loop)."""
        super().__init__(system_prompt=system_prompt)
        if calls not in CALL_RULES:
            raise ValueError(f"unknown call rules {calls!r}; choose one of: {', '.join(CALL_RULES)}")
        self.calls: CallRules = calls

    def under_rules(self, calls: CallRules) -> HermesProtocol:
        """This protocol (same class and system prompt) under other call rules."""
        if calls == self.calls:
            return self
        return type(self)(system_prompt=self._system_prompt, calls=calls)

    def parse(self, text: str) -> ParsedTurn:
        """Read a reply under the protocol's call rules.

        Under ``trl`` rules a reply is read as TRL's GRPO trainer reads it (its Qwen response template:
        strict JSON, closed tags, every call of the reply run), so an episode evaluated under them is
        the episode TRL would have trained on:

        - A call TRL cannot read (JSON with raw newlines, Python quoting, a Markdown fence, an unclosed
          tag; any one of them) makes the whole reply text: nothing runs, and the reply ends the episode.
        - Every call of a reply runs, in order. A call naming no tool, or whose arguments the tool
          refuses, is a ``rejected`` action: it runs nothing and comes back as a failed call.
        - An answer given beside calls is set aside. No problem is ever reported: TRL can only send
          tool results back, so a reply without a readable call ends the episode.
        - An unclosed ``<think>`` holds the rest of the reply.
        """
        if self.calls == "lenient":
            return super().parse(text)
        visible, thoughts = split_think(text, unclosed_is_thought=True)
        turn = ParsedTurn()
        calls = trl_tool_calls(visible, self.call_tag)
        if calls:
            turn.actions = [self._trl_action(name, arguments, raw) for name, arguments, raw in calls]
            return turn
        prose = without_blocks(visible, find_blocks(visible, self.call_tag))
        turn.answer = self.extract_answer(prose)
        if turn.answer is None:
            turn.answer = self.extract_answer(thoughts)
        return turn

    def _trl_action(self, name: str, arguments: object, raw: str) -> Action:
        """The action for a call TRL read; what TRL or the tool would refuse becomes a ``rejected`` action."""
        if name != self.tool_name:
            read: Action | str = f"there is no tool named {name!r}; the only tool is {self.tool_name}"
        elif not isinstance(arguments, dict):
            read = f"the arguments of {self.tool_name} must be a JSON object, not {type(arguments).__name__}"
        else:
            read = self.action_for(name, arguments, raw)
        return Action(kind="rejected", error=read, raw=raw) if isinstance(read, str) else read

    def render_observation(self, outcomes: list[ToolOutcome], issues: list[str]) -> list[Message]:
        """Under ``trl`` rules every result is a tool message of its own that ends with the closing
        instruction, because TRL shows the result of each call as its tool method returned it."""
        if self.calls == "lenient" or not outcomes:
            return super().render_observation(outcomes, issues)
        tail = compose(issues_text(issues), self.continue_hint)
        return [Message.of(self.observation_role, *compose(*outcome_parts(outcome), *tail)) for outcome in outcomes]

    def tool_schemas(self) -> list[dict[str, Any]]:
        """The one tool as a function schema, keys in the order transformers' ``get_json_schema`` writes them,
        so a trainer that derives the schema from a Python method renders the same text."""
        properties = {**copy.deepcopy(self.tool_arguments), "image_index": dict(IMAGE_INDEX_ARGUMENT)}
        parameters = {"type": "object", "properties": properties, "required": list(self.required_arguments)}
        function = {"name": self.tool_name, "description": self.tool_description, "parameters": parameters}
        return [{"type": "function", "function": function}]

    @abstractmethod
    def build_action(self, arguments: dict[str, Any], image_index: int, raw: str) -> Action | str:
        """The action for decoded arguments of this protocol's tool, or an issue naming the bad argument."""

    def read_call(self, block: Block) -> Action | str:
        decoded = decode_hermes_call(block.body)
        if isinstance(decoded, str):
            return f"Your <tool_call> {decoded}, so nothing was run. Write it as {self.call_shape}"
        name, arguments = decoded
        return self.action_for(name, arguments, block.raw)

    def action_for(self, name: str, arguments: dict[str, Any], raw: str) -> Action | str:
        """The action a decoded call asks for (what a trainer's tool loop hands over), or the issue with it."""
        if name != self.tool_name:
            return f"There is no tool named {name!r}; the only tool is {self.tool_name}. Call it as {self.call_shape}"
        index = parse_image_index(arguments.get("image_index"), default=0)
        if isinstance(index, str):
            return f"In your {self.tool_name} call, {index}; nothing was run."
        return self.build_action(arguments, index, raw)
