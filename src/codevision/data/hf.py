"""Hugging Face ``datasets`` glue for the TRL exports: the optional import and the Arrow fix-up.

Arrow gives every struct in a list the union of all keys, so after a round trip a text part also
has ``"image": None`` and an image part ``"text": None``. TRL counts image parts by the presence of
the ``image`` key and the Qwen chat templates test ``'image' in part``, so such rows would render
text as images. :func:`load_trl_dataset` removes the ``None`` keys on access.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any


def require_datasets() -> ModuleType:
    """The ``datasets`` module, or an error saying how to install it."""
    try:
        import datasets
    except ImportError:
        raise RuntimeError("the TRL exports need Hugging Face datasets: pip install 'codevision[hf]'") from None
    return datasets


def strip_none(value: Any) -> Any:
    """``value`` with every ``None``-valued key removed from the dicts inside it, recursively."""
    if isinstance(value, dict):
        return {k: strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_none(v) for v in value]
    return value


def _strip_batch(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
    return {key: [strip_none(v) for v in values] for key, values in batch.items()}


def load_trl_dataset(path: str | Path) -> Any:
    """A TRL export (parquet) as a ``datasets.Dataset`` with PIL images and no ``None`` keys in messages."""
    datasets = require_datasets()
    return without_none(datasets.Dataset.from_parquet(str(path)))


def without_none(dataset: Any) -> Any:
    """``dataset`` read with the ``None`` keys parquet adds to nested messages removed (TRL reads their keys)."""
    dataset.set_transform(_strip_batch)
    return dataset
