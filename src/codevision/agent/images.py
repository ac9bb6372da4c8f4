"""The images of a trajectory as the model sees them: sized by the model's pixel budget, once.

Resizing here, with the budget of the processor that will read the image, means the trajectory
records the exact size the model saw and neither a server nor a processor resizes a second time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import overload

from PIL import Image

from codevision.chat.budget import ImageBudget


class ModelImages(Sequence[Image.Image]):
    """The images as the model sees them, resized on first access only.

    Policies that never look at pixels (scripted replies, replays) then cost nothing, and a server
    policy pays for each image once per trajectory rather than once per turn.
    """

    def __init__(self, source: Callable[[int], Image.Image], budget: ImageBudget) -> None:
        self._source = source
        self._budget = budget
        self._count = 0
        self._cache: dict[int, Image.Image] = {}

    def append_index(self) -> None:
        self._count += 1

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> Image.Image: ...

    @overload
    def __getitem__(self, index: slice) -> list[Image.Image]: ...

    def __getitem__(self, index: int | slice) -> Image.Image | list[Image.Image]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._count))]
        if not -self._count <= index < self._count:
            raise IndexError(f"image {index} does not exist ({self._count} images)")
        index %= self._count
        if index not in self._cache:
            self._cache[index] = self._budget.fit(self._source(index))
        return self._cache[index]
