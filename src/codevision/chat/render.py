"""One renderer from a conversation to the exact tokens a model sees and a trainer trains on.

Evaluation builds each prompt with it and every training path renders the recorded trajectory with
it, so the prompt a reply was sampled from is, token for token and pixel for pixel, the prefix of
the training sequence up to that reply. What it produces:

* ``input_ids``: recorded replies spliced in as the ids the model sampled (checked against their
  text), and only text that was never sampled tokenised;
* ``generated_mask``: 1 on each assistant reply and its end-of-turn token, 0 on everything else
  (system, user, observations, image pads, the newline after an end-of-turn);
* the image processor's inputs (``pixel_values``, ``image_grid_thw``), and one image-pad token per
  merged patch, checked against the grids;
* where each reply starts and ends.

The mask never comes from ``{% generation %}`` markers (``return_assistant_tokens_mask`` needs
transformers 5.18 for processors): the conversation is rendered one turn at a time and the texts
diffed, the way TRL's tool loop and verl's agent loop build their sequences. Each piece after the
first starts right after an end-of-turn token, a special token that tokenizers split on, so
tokenising the pieces one by one gives the same ids as tokenising the whole text, and recorded
ids can be spliced between them. Only ``apply_chat_template(tokenize=False)``, the tokenizer and
the image processor are used, which behave the same on transformers 5.10 and 5.24.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from codevision.chat.messages import shown_images, to_chat
from codevision.chat.templates import chat_template_for, template_supports_tool_role
from codevision.protocols.base import Protocol
from codevision.trajectory import Message

END_OF_TURN = "<|im_end|>"


class RenderError(ValueError):
    """The conversation cannot be rendered faithfully; the message says which turn and why."""


@dataclass(frozen=True)
class ReplySpan:
    """Where one assistant reply lies in the ids: ``[start, end)``, all of it in the generated mask.

    ``start`` is also the length of the prompt the reply was sampled from. ``sampled``: the ids are
    the recorded ones (else the text was tokenised). ``closed``: the reply had no end-of-turn token
    and the conversation goes on, so one was added at ``end``, outside the mask (the model never
    wrote it).
    """

    start: int
    end: int
    sampled: bool
    closed: bool


@dataclass
class Rendered:
    """A rendered conversation; see the module docstring for what each part holds."""

    input_ids: list[int]
    generated_mask: list[int]
    replies: list[ReplySpan]
    #: The images whose pads are in ``input_ids``, in order (what a trainer passes with them).
    images: list[Image.Image]
    #: The image processor's output for ``images`` (tensors), empty when there are none.
    image_inputs: dict[str, Any]


def sampled_ids(messages: Sequence[Message]) -> dict[int, list[int]]:
    """The recorded token ids of the assistant messages that carry them, by assistant turn number."""
    replies = [message for message in messages if message.role == "assistant"]
    return {turn: list(message.token_ids) for turn, message in enumerate(replies) if message.token_ids is not None}


class ChatRenderer:
    """Renders codevision conversations with one processor and chat template.

    - ``tools``: a :class:`~codevision.protocols.base.Protocol` (its system prompt describes its tools,
      so no schema is rendered, as in CodeVision's data), or the JSON tool schemas a trainer renders
      with a template that prints them (to reproduce that trainer's prompt).
    - ``chat_template``: the template text; by default the one :func:`chat_template_for` picks.
    - ``end_of_turn``: the token that closes a turn in the template (Qwen: ``<|im_end|>``).
    """

    def __init__(
        self,
        processor: Any,
        tools: Protocol | Sequence[Mapping[str, Any]] | None = None,
        chat_template: str | None = None,
        *,
        end_of_turn: str = END_OF_TURN,
    ) -> None:
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.tools = None if tools is None or isinstance(tools, Protocol) else [dict(tool) for tool in tools]
        self.chat_template = chat_template if chat_template is not None else chat_template_for(processor)
        self.tool_role = template_supports_tool_role(self.chat_template)
        self.end_of_turn = end_of_turn
        self.end_of_turn_id = self._token_id(end_of_turn)
        self.image_token = getattr(processor, "image_token", "<|image_pad|>")
        self.image_token_id = self._token_id(self.image_token)
        video_token = getattr(processor, "video_token", None)
        self.vision_ids = {self.image_token_id} | ({self._token_id(video_token)} if video_token else set())
        self.merge_size = int(processor.image_processor.merge_size)
        self.patch_size = int(processor.image_processor.patch_size)

    def _token_id(self, token: str) -> int:
        ids = self.tokenizer.convert_tokens_to_ids([token])
        if not ids or ids[0] is None or ids[0] == self.tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {token!r} token")
        return int(ids[0])

    # ------------------------------------------------------------------ the conversation
    def render(
        self,
        messages: Sequence[Message],
        images: Sequence[Image.Image],
        *,
        sampled: Mapping[int, Sequence[int]] | None = None,
        add_generation_prompt: bool = False,
    ) -> Rendered:
        """Render ``messages`` (image parts index ``images``, already sized for the model).

        ``sampled`` maps an assistant turn number (0-based) to the ids the model generated for it
        (:func:`sampled_ids` reads them from the messages). With ``add_generation_prompt`` the
        messages end with a user or tool turn and the result is the prompt for the next reply;
        without it, it is a training sequence and ends with the last reply (observations after it
        are left out: no reply depends on them).
        """
        shown = shown_images(messages, images)
        image_inputs, pads = self._process_images(shown)
        return self._render(messages, images, pads, sampled, add_generation_prompt, shown, image_inputs)

    def render_tokens(
        self,
        messages: Sequence[Message],
        sizes: Sequence[tuple[int, int]],
        *,
        sampled: Mapping[int, Sequence[int]] | None = None,
        add_generation_prompt: bool = False,
    ) -> Rendered:
        """The training sequence of ``messages`` without decoding a pixel: ids, mask and reply spans.

        ``sizes[i]`` is the (width, height) of image ``i`` as the model sees it (a multiple of the
        patch factor, as :meth:`ImageBudget.fit` makes it), which fixes its number of image pads. A
        trainer plans its batches (lengths, truncation) with this, and runs the image processor per
        batch; ``images`` and ``image_inputs`` of the result are empty. ``add_generation_prompt`` is
        as in :meth:`render`: a token-in/token-out rollout builds each turn's prompt this way, since
        its server runs the image processor itself.
        """
        shown = shown_images(messages, sizes)
        pads = [self.pads_of(size) for size in shown]
        return self._render(messages, sizes, pads, sampled, add_generation_prompt, [], {})

    def _render(
        self,
        messages: Sequence[Message],
        images: Sequence[Any],
        pads: list[int],
        sampled: Mapping[int, Sequence[int]] | None,
        add_generation_prompt: bool,
        shown: list[Image.Image],
        image_inputs: dict[str, Any],
    ) -> Rendered:
        sampled = dict(sampled or {})
        messages = list(messages)
        assistants = [i for i, message in enumerate(messages) if message.role == "assistant"]
        if add_generation_prompt and (not messages or messages[-1].role == "assistant"):
            raise RenderError("a generation prompt needs messages that end with a user or tool turn")
        if not add_generation_prompt:
            if not assistants:
                raise RenderError("there is no assistant message to train on")
            messages = messages[: assistants[-1] + 1]
        unknown = sorted(set(sampled) - set(range(len(assistants))))
        if unknown:
            raise RenderError(f"recorded ids for turns {unknown}, but there are {len(assistants)} assistant turns")
        chat = to_chat(messages, images, tool_role=self.tool_role)
        sequence = _Sequence(self, pads)
        for turn, position in enumerate(assistants):
            prompt = self._text(chat[:position], add_generation_prompt=True)
            sequence.extend_context(prompt, _image_count(messages[:position]), f"the prompt of turn {turn}")
            reply_text = sequence.reply_text(self._text(chat[: position + 1], add_generation_prompt=False), turn)
            if turn in sampled:
                reply = list(sampled[turn])
                self._check_sampled(turn, reply, reply_text)
            else:
                reply = [*self.encode(reply_text, []), self.end_of_turn_id]
            follows = position < len(messages) - 1
            sequence.add_reply(reply, sampled=turn in sampled, close=follows and reply[-1] != self.end_of_turn_id)
        if add_generation_prompt:
            prompt = self._text(chat, add_generation_prompt=True)
            sequence.extend_context(prompt, len(pads), "the generation prompt")
        sequence.check_images()
        return Rendered(sequence.ids, sequence.mask, sequence.replies, shown, image_inputs)

    def model_inputs(self, rendered: Rendered) -> dict[str, Any]:
        """A batch of one for the model's forward pass or ``generate``, as the processor would build it."""
        import torch

        ids = torch.tensor([rendered.input_ids], dtype=torch.long)
        inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": torch.ones_like(ids), **rendered.image_inputs}
        if "mm_token_type_ids" in getattr(self.processor, "model_input_names", ()):
            types = self.processor.create_mm_token_type_ids([rendered.input_ids])
            inputs["mm_token_type_ids"] = torch.tensor(types, dtype=torch.long)
        return inputs

    # ------------------------------------------------------------------ primitives
    def _text(self, chat: list[dict[str, Any]], *, add_generation_prompt: bool) -> str:
        text: str = self.processor.apply_chat_template(
            chat,
            tools=self.tools,
            chat_template=self.chat_template,
            add_generation_prompt=add_generation_prompt,
            tokenize=False,
        )
        return text

    def encode(self, text: str, pads: Sequence[int]) -> list[int]:
        """Tokenise ``text``, its i-th image placeholder expanded to ``pads[i]`` image-pad tokens."""
        pieces = text.split(self.image_token)
        if len(pieces) - 1 != len(pads):
            raise RenderError(f"the template wrote {len(pieces) - 1} image placeholders where {len(pads)} images go")
        expanded = pieces[0] + "".join(
            self.image_token * count + piece for count, piece in zip(pads, pieces[1:], strict=True)
        )
        return list(self.tokenizer(expanded, add_special_tokens=False)["input_ids"])

    def _process_images(self, images: list[Image.Image]) -> tuple[dict[str, Any], list[int]]:
        """The image processor's output and each image's pad count (merged patches of its grid)."""
        if not images:
            return {}, []
        out = self.processor.image_processor(images=images, return_tensors="pt")
        pads = [int(grid.prod()) // self.merge_size**2 for grid in out["image_grid_thw"]]
        return dict(out), pads

    def pads_of(self, size: tuple[int, int]) -> int:
        """Image pads of an image the processor will not resize: one per merged patch."""
        factor = self.patch_size * self.merge_size
        width, height = size
        if width % factor or height % factor:
            raise RenderError(
                f"an image of {width}x{height} is not sized for the model (sides a multiple of {factor}); "
                "fit it with the processor's ImageBudget first"
            )
        return (width // factor) * (height // factor)

    def _check_sampled(self, turn: int, reply: list[int], reply_text: str) -> None:
        """Recorded ids must be this turn's reply: their text, and no vision tokens (they would need pixels)."""
        if not reply:
            raise RenderError(f"turn {turn}: the recorded ids are empty")
        vision = sorted(self.vision_ids & set(reply))
        if vision:
            raise RenderError(f"turn {turn}: the recorded ids hold image or video pad tokens {vision}")
        decoded = self.tokenizer.decode(reply, skip_special_tokens=True)
        if decoded != reply_text:
            raise RenderError(
                f"turn {turn}: the recorded ids decode to {_excerpt(decoded)}, but the message says "
                f"{_excerpt(reply_text)}: they belong to another reply or another tokenizer"
            )


class _Sequence:
    """The ids and mask being built, and how much of the rendered text and images they cover."""

    def __init__(self, renderer: ChatRenderer, pads: list[int]) -> None:
        self.renderer = renderer
        self.pads = pads
        self.ids: list[int] = []
        self.mask: list[int] = []
        self.replies: list[ReplySpan] = []
        self.text = ""  # the rendered text the ids cover, up to the last end-of-turn
        self.images = 0

    def extend_context(self, rendered: str, images: int, what: str) -> None:
        """Append what ``rendered`` (a render of messages holding ``images`` images) adds after the covered text."""
        if not rendered.startswith(self.text):
            raise RenderError(f"{what}: the template renders the earlier turns differently (not prefix-preserving)")
        delta = rendered[len(self.text) :]
        count = delta.count(self.renderer.image_token)
        if self.images + count != images:
            raise RenderError(
                f"{what}: the template wrote {self.images + count} image placeholders for messages with {images} images"
            )
        self._append(self.renderer.encode(delta, self.pads[self.images : images]), 0)
        self.images = images
        self.text = rendered

    def reply_text(self, rendered: str, turn: int) -> str:
        """The text of the reply that ``rendered`` (the conversation through this reply) adds; covers it."""
        end_of_turn = self.renderer.end_of_turn
        if not rendered.startswith(self.text):
            raise RenderError(f"turn {turn}: the rendered reply does not extend its prompt")
        segment = rendered[len(self.text) :]
        end = segment.rfind(end_of_turn)
        if end < 0:
            raise RenderError(f"turn {turn}: the template closes the reply without {end_of_turn}")
        if self.renderer.image_token in segment[:end]:
            raise RenderError(f"turn {turn}: an assistant message holds an image")
        self.text += segment[: end + len(end_of_turn)]
        return segment[:end]

    def add_reply(self, reply: list[int], *, sampled: bool, close: bool) -> None:
        start = len(self.ids)
        self._append(reply, 1)
        self.replies.append(ReplySpan(start, len(self.ids), sampled=sampled, closed=close))
        if close:
            self._append([self.renderer.end_of_turn_id], 0)

    def check_images(self) -> None:
        """As many image-pad tokens as the grids imply: a mismatch would only fail in the model's forward pass."""
        pad_tokens = self.ids.count(self.renderer.image_token_id)
        if self.images != len(self.pads) or pad_tokens != sum(self.pads):
            raise RenderError(
                f"{pad_tokens} image pad tokens for {self.images} of {len(self.pads)} images, "
                f"but the image grids imply {sum(self.pads)}"
            )

    def _append(self, ids: list[int], mask: int) -> None:
        self.ids += ids
        self.mask += [mask] * len(ids)


def _image_count(messages: Sequence[Message]) -> int:
    return sum(len(message.image_indices) for message in messages)


def _excerpt(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else f"{text[: limit // 2]}…{text[-limit // 2 :]}")
