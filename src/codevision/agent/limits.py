"""Budgets of one trajectory."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from codevision.chat.budget import ImageBudget

IMAGE_FIELDS = frozenset({"image_factor", "image_min_pixels", "image_max_pixels"})


class Limits(BaseModel):
    """Turn, token and image budgets; defaults follow CodeVision's released evaluation settings.

    The image fields size images for policies that do not know their model's processor (servers,
    scripted replies); a local model's own processor budget replaces them (see
    :meth:`~codevision.policies.base.Policy.image_budget`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_turns: int = Field(12, ge=1, description="Assistant turns before the episode stops.")
    max_tokens_per_turn: int = Field(4096, ge=1, description="Tokens one reply may generate.")
    max_total_tokens: int = Field(16384, ge=1, description="Response tokens over the whole trajectory.")
    max_images_in_context: int = Field(24, ge=1, description="Images shown to the model; later ones are named only.")
    image_factor: int = Field(28, ge=1, description="Patch factor: 28 for Qwen2.5-VL, 32 for Qwen3-VL.")
    image_min_pixels: int = Field(4 * 28 * 28, ge=1)
    image_max_pixels: int = Field(1280 * 28 * 28, ge=1, description="Pixel budget per image shown to the model.")

    @property
    def image_budget(self) -> ImageBudget:
        return ImageBudget(self.image_factor, self.image_min_pixels, self.image_max_pixels)

    @property
    def sets_image_budget(self) -> bool:
        """Whether the image fields were given rather than left at their defaults."""
        return bool(self.model_fields_set & IMAGE_FIELDS)

    def with_image_budget(self, budget: ImageBudget) -> Limits:
        """These limits with images sized by ``budget`` (e.g. ``ImageBudget.from_processor`` of a served model)."""
        return self.model_copy(
            update={
                "image_factor": budget.factor,
                "image_min_pixels": budget.min_pixels,
                "image_max_pixels": budget.max_pixels,
            }
        )
