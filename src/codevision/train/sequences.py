"""Training sequences from conversations, through the one chat renderer, and batches of them.

Before training starts every conversation is rendered once without decoding a pixel
(:meth:`ChatRenderer.render_tokens`): its ids, the mask of the model's own tokens and its image
pads are fixed, a conversation that cannot be rendered stops the run with its name, and one too
long for ``max_length`` is dropped or cut after its last reply that fits, never inside a turn or
an image, and counted. Batches then decode and fit only their own images, run the processor, check
its grids against the planned pads, and set the labels: the ids under the mask, ``-100`` elsewhere.
So the loss falls on exactly the tokens evaluation would have sampled, and a long run starts only
when every row is known to be trainable.
"""

from __future__ import annotations

import hashlib
import io
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from codevision.chat import ChatRenderer, ImageBudget, RenderError
from codevision.chat.messages import shown_images
from codevision.train.config import Overflow
from codevision.train.examples import Conversation, DataError
from codevision.trajectory import Message

IGNORE_INDEX = -100


@dataclass
class Planned:
    """A conversation's training sequence: ids and mask (cut to fit), and the images whose pads it holds."""

    conversation: int
    input_ids: list[int]
    generated_mask: list[int]
    #: Indices (into the conversation's images) of the images shown, in order, and each one's pad count.
    shown: list[int]
    pads: list[int]


@dataclass
class Plan:
    """Every trainable sequence, and what happened to the others."""

    sequences: list[Planned] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    truncated: list[str] = field(default_factory=list)
    #: Recorded replies spliced in as sampled, and recorded replies re-tokenised from their text because
    #: their ids are another tokenizer's (a trajectory sampled by a different model).
    sampled_replies: int = 0
    retokenised_replies: int = 0

    @property
    def tokens(self) -> int:
        return sum(len(sequence.input_ids) for sequence in self.sequences)

    @property
    def trained_tokens(self) -> int:
        return sum(sum(sequence.generated_mask) for sequence in self.sequences)

    def digest(self) -> str:
        """A fingerprint of the sequences (ids, masks, images): a resumed run must train on the same ones."""
        digest = hashlib.sha256()
        for sequence in self.sequences:
            for part in (sequence.input_ids, sequence.generated_mask, sequence.shown, sequence.pads):
                digest.update(struct.pack(f"<{len(part) + 1}q", len(part), *part))
        return digest.hexdigest()


def image_size(conversation: Conversation, index: int, budget: ImageBudget) -> tuple[int, int]:
    """The size image ``index`` is shown at, from its header alone (no pixels decoded)."""
    source = conversation.images[index]
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            return budget.target(*image.size)
    except (OSError, ValueError) as exc:
        raise DataError(f"{conversation.where}: image {index} cannot be read: {exc}") from None


def plan(
    conversations: Sequence[Conversation],
    renderer: ChatRenderer,
    budget: ImageBudget,
    *,
    max_length: int,
    overflow: Overflow,
) -> Plan:
    """Render every conversation to its training sequence and fit it to ``max_length``."""
    result = Plan()
    for number, conversation in enumerate(conversations):
        sampled = _usable_sampled_ids(conversation.messages, renderer, result)
        sizes = [image_size(conversation, index, budget) for index in range(len(conversation.images))]
        try:
            rendered = renderer.render_tokens(conversation.messages, sizes, sampled=sampled)
        except (RenderError, ValueError) as exc:
            raise DataError(f"{conversation.where}: cannot be rendered for training: {exc}") from None
        shown = _shown_indices(conversation.messages)
        pads = [renderer.pads_of(size) for size in shown_images(conversation.messages, sizes)]
        ids, mask = rendered.input_ids, rendered.generated_mask
        if len(ids) > max_length:
            fitting = [reply.end for reply in rendered.replies if reply.end <= max_length]
            if overflow == "drop" or not fitting:
                why = "its first reply alone" if fitting == [] and overflow == "truncate" else "it"
                result.dropped.append(f"{conversation.where}: {len(ids)} tokens, {why} over max_length {max_length}")
                continue
            cut = fitting[-1]
            kept = _images_in(ids[:cut], renderer.image_token_id)
            result.truncated.append(
                f"{conversation.where}: cut from {len(ids)} to {cut} tokens after reply {len(fitting)} of "
                f"{len(rendered.replies)}"
            )
            ids, mask, shown, pads = ids[:cut], mask[:cut], shown[:kept], pads[:kept]
        result.sequences.append(Planned(number, list(ids), list(mask), shown, pads))
    return result


def _usable_sampled_ids(messages: Sequence[Message], renderer: ChatRenderer, plan: Plan) -> dict[int, list[int]]:
    """Recorded reply ids that are this tokenizer's: they decode to the reply and hold no image pads."""
    usable: dict[int, list[int]] = {}
    replies = [message for message in messages if message.role == "assistant"]
    for turn, message in enumerate(replies):
        if message.token_ids is None:
            continue
        ids = list(message.token_ids)
        decoded = renderer.tokenizer.decode(ids, skip_special_tokens=True)
        if ids and decoded == message.text and not renderer.vision_ids & set(ids):
            usable[turn] = ids
            plan.sampled_replies += 1
        else:
            plan.retokenised_replies += 1
    return usable


def _shown_indices(messages: Sequence[Message]) -> list[int]:
    return [index for message in messages for index in message.image_indices]


def _images_in(ids: Sequence[int], pad: int) -> int:
    """How many images' pad runs ``ids`` holds (each image's pads are one contiguous run)."""
    runs, previous = 0, None
    for token in ids:
        if token == pad and previous != pad:
            runs += 1
        previous = token
    return runs


class Collator:
    """Batches of planned sequences for TRL's ``SFTTrainer``: padded ids, labels and the images' pixels.

    The trainer's dataset holds only row numbers (``{"sequence": i}``); everything else is here, so
    the trainer never re-tokenises or re-templates a row.
    """

    def __init__(
        self,
        sequences: Sequence[Planned],
        conversations: Sequence[Conversation],
        renderer: ChatRenderer,
        budget: ImageBudget,
    ) -> None:
        self.sequences = sequences
        self.conversations = conversations
        self.renderer = renderer
        self.budget = budget
        tokenizer = renderer.tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad if pad is not None else 0)

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        rows = [self.sequences[int(feature["sequence"])] for feature in features]
        width = max(len(row.input_ids) for row in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        for number, row in enumerate(rows):
            ids = torch.tensor(row.input_ids, dtype=torch.long)
            mask = torch.tensor(row.generated_mask, dtype=torch.bool)
            input_ids[number, : len(ids)] = ids
            attention[number, : len(ids)] = 1
            labels[number, : len(ids)] = torch.where(mask, ids, IGNORE_INDEX)
        batch: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
        batch.update(self._pixels(rows))
        processor = self.renderer.processor
        if "mm_token_type_ids" in getattr(processor, "model_input_names", ()):
            types = processor.create_mm_token_type_ids(input_ids.tolist())
            batch["mm_token_type_ids"] = torch.tensor(types, dtype=torch.long) * attention
        return batch

    def _pixels(self, rows: Sequence[Planned]) -> dict[str, Any]:
        images: list[Image.Image] = []
        pads: list[int] = []
        for row in rows:
            conversation = self.conversations[row.conversation]
            images += [self.budget.fit(conversation.image(index)) for index in row.shown]
            pads += row.pads
        if not images:
            return {}
        out = self.renderer.processor.image_processor(images=images, return_tensors="pt")
        merge = self.renderer.merge_size**2
        found = [int(grid.prod()) // merge for grid in out["image_grid_thw"]]
        if found != pads:
            raise RenderError(f"the processor made {found} image pads where the plan has {pads}: its budget changed")
        return dict(out)
