"""Reply ids for tests: the tokenizer's own split of a text, and ids that decode to it without being it.

A sampling model often emits ids that are not the canonical tokenisation of their own text; every
path that trains on sampled replies must keep them as they were, so tests script both kinds.
"""

from __future__ import annotations

from typing import Any

END = "<|im_end|>"


def noncanonical(tokenizer: Any, text: str) -> list[int]:
    """Ids that decode to ``text`` without being its tokenisation (a few words spelled letter by
    letter), as a sampling model may emit them, then the end of the turn."""
    ids: list[int] = []
    changed = 0
    for token in tokenizer(text, add_special_tokens=False)["input_ids"]:
        piece = tokenizer.decode([token])
        if changed < 3 and len(piece.strip()) >= 3 and piece.strip().isalpha():
            ids += [tokenizer.convert_tokens_to_ids(tokenizer.tokenize(letter))[0] for letter in piece]
            changed += 1
        else:
            ids.append(token)
    assert changed and tokenizer.decode(ids) == text
    return [*ids, tokenizer.convert_tokens_to_ids(END)]


def canonical(tokenizer: Any, text: str) -> list[int]:
    return [*tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.convert_tokens_to_ids(END)]
