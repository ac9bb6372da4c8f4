"""Local image-text-to-text generation with transformers, in this process.

Each prompt is built by :class:`~codevision.chat.ChatRenderer` with the checkpoint's own processor,
token-in/token-out: earlier replies go back to the model as the ids it sampled, so the prompt of
every turn is, token for token and pixel for pixel, the prefix of the sequence a trainer renders
from the recorded trajectory. The response token ids are reported exactly. Works for Qwen2.5-VL,
Qwen3-VL and other models that ``AutoModelForImageTextToText`` loads.

torch and transformers are not dependencies of codevision; they are imported when a policy is
created, and a missing install is reported with the command that fixes it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from codevision.chat import ChatRenderer, ImageBudget, sampled_ids
from codevision.chat.tools import template_renders_tools
from codevision.policies.base import Generation, Policy, PolicyError
from codevision.trajectory import Message, Usage

INSTALL_HINT = "pip install torch==2.13.0 'transformers>=5.18'"


def _import_engine() -> tuple[Any, Any]:
    """``(torch, transformers)``, or an ImportError that says what to install."""
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise ImportError(
            f"TransformersPolicy needs torch and transformers ({exc}); install them with: {INSTALL_HINT}"
        ) from exc
    return torch, transformers


@dataclass
class _Loaded:
    renderer: ChatRenderer
    model: Any
    eos_ids: frozenset[int]


class TransformersPolicy(Policy):
    """A local model (folder or cached checkpoint) run with transformers.

    The processor and model are loaded on first use, in a worker thread, and generations run one
    at a time in that thread, so the event loop stays responsive while the model computes.

    - ``device`` / ``dtype``: where and in which precision the weights live (``"auto"``: as saved).
    - ``max_pixels``: overrides the pixel budget saved with the image processor (Qwen-VL processors).
      The agent loop sizes images with the processor's budget (:meth:`image_budget`), so they reach
      the model unchanged.
    - ``temperature``: 0 is greedy decoding; above 0 samples (the model's own top-p/top-k apply).
    - ``seed``: reseeds torch before every generation, so the same prompt gives the same reply.
    - ``trust_remote_code``: allow a processor or model class defined by code in the model folder.
    - ``tools``: function schemas for the chat template to render (by default none: the protocol's
      system prompt describes its tools). A template that ignores them is an error, not a prompt
      silently without them.

    The chat template is the one :func:`~codevision.chat.chat_template_for` picks: the checkpoint's
    own when it renders tool turns, codevision's shipped Qwen-VL template for Qwen2.5-VL's, which
    cannot (and which renders no tool schemas).
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        device: str = "cpu",
        dtype: str = "auto",
        max_pixels: int | None = None,
        temperature: float = 0.0,
        seed: int | None = None,
        trust_remote_code: bool = False,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        _import_engine()
        self.model_path = str(model_path)
        self.name = self.model_path
        self.device = device
        self.dtype = dtype
        self.max_pixels = max_pixels
        self.temperature = temperature
        self.seed = seed
        self.trust_remote_code = trust_remote_code
        self.tools = [dict(tool) for tool in tools] if tools else None
        self._processor: Any | None = None
        self._loaded: _Loaded | None = None
        self._lock = asyncio.Lock()

    async def image_budget(self) -> ImageBudget | None:
        """The budget of the model's image processor as saved with it (or set by ``max_pixels``);
        None for processors that size images another way than Qwen-VL's."""
        processor = self._processor
        if processor is None:
            async with self._lock:
                processor = await asyncio.to_thread(self._load_processor)
        try:
            return ImageBudget.from_processor(processor)
        except ValueError:
            return None

    async def generate(
        self, messages: Sequence[Message], images: Sequence[Image.Image], *, max_tokens: int
    ) -> Generation:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        async with self._lock:
            cancelled = threading.Event()
            work = asyncio.ensure_future(asyncio.to_thread(self._generate, messages, images, max_tokens, cancelled))
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                # A thread cannot be interrupted: ask generate() to stop after the current token, and
                # keep the lock until it has, so two generations never share the model.
                cancelled.set()
                await asyncio.wait([work])
                raise

    def _load_processor(self) -> Any:
        """The processor, loaded once (callers hold the lock)."""
        if self._processor is None:
            _, transformers = _import_engine()
            kwargs: dict[str, Any] = {"trust_remote_code": self.trust_remote_code}
            if self.max_pixels is not None:
                # A from_pretrained argument, not a processor call argument: transformers 5.10 ignores
                # max_pixels given to the processor's __call__.
                kwargs["max_pixels"] = self.max_pixels
            try:
                self._processor = transformers.AutoProcessor.from_pretrained(self.model_path, **kwargs)
            except (OSError, ValueError, ImportError) as exc:
                raise PolicyError(f"cannot load the model {self.model_path!r}: {exc}") from exc
        return self._processor

    def _load(self) -> _Loaded:
        _, transformers = _import_engine()
        processor = self._load_processor()
        try:
            renderer = ChatRenderer(processor, self.tools)
        except ValueError as exc:
            raise PolicyError(f"cannot render prompts for {self.model_path!r}: {exc}") from exc
        if self.tools and not template_renders_tools(processor, renderer.chat_template, self.tools):
            raise PolicyError(
                f"the chat template used for {self.model_path!r} does not render tool schemas (codevision's "
                "shipped Qwen-VL template, used for Qwen2.5-VL, leaves them out); drop the tools, or save a "
                "template that renders both tool schemas and tool turns as the checkpoint's chat_template.jinja"
            )
        try:
            model = transformers.AutoModelForImageTextToText.from_pretrained(
                self.model_path,
                dtype=self.dtype,
                trust_remote_code=self.trust_remote_code,
            )
        except (OSError, ValueError, ImportError) as exc:
            raise PolicyError(f"cannot load the model {self.model_path!r}: {exc}") from exc
        model.to(self.device).eval()
        eos = model.generation_config.eos_token_id
        eos_ids = frozenset([eos] if isinstance(eos, int) else (eos or []))
        return _Loaded(renderer, model, eos_ids)

    def _generate(
        self,
        messages: Sequence[Message],
        images: Sequence[Image.Image],
        max_tokens: int,
        cancelled: threading.Event,
    ) -> Generation:
        torch, _ = _import_engine()
        from jinja2 import TemplateError

        if self._loaded is None:
            self._loaded = self._load()
        loaded = self._loaded
        start = time.perf_counter()
        try:
            rendered = loaded.renderer.render(
                messages, images, sampled=sampled_ids(messages), add_generation_prompt=True
            )
        except (ValueError, TypeError, KeyError, TemplateError) as exc:
            raise PolicyError(f"cannot build the prompt for {self.model_path!r}: {exc}") from exc
        inputs = {key: value.to(loaded.model.device) for key, value in loaded.renderer.model_inputs(rendered).items()}

        def stop_when_cancelled(input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), cancelled.is_set(), dtype=torch.bool, device=input_ids.device)

        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": self.temperature} if self.temperature > 0 else {"do_sample": False}
        )
        if self.seed is not None:
            torch.manual_seed(self.seed)
        prompt_length = len(rendered.input_ids)
        try:
            with torch.inference_mode():
                output = loaded.model.generate(
                    **inputs, max_new_tokens=max_tokens, stopping_criteria=[stop_when_cancelled], **sampling
                )
        except (RuntimeError, ValueError) as exc:
            raise PolicyError(f"generation failed for {self.model_path!r}: {exc}") from exc
        token_ids = [int(token) for token in output[0, prompt_length:].tolist()]
        finished = bool(token_ids) and token_ids[-1] in loaded.eos_ids
        return Generation(
            text=loaded.renderer.tokenizer.decode(token_ids, skip_special_tokens=True),
            usage=Usage(prompt_tokens=prompt_length, completion_tokens=len(token_ids)),
            finish_reason="stop" if finished else "length",
            token_ids=token_ids,
            seconds=time.perf_counter() - start,
        )

    async def aclose(self) -> None:
        """Drop the model and processor so their memory can be freed (waits for a running generation)."""
        async with self._lock:
            self._loaded = None
            self._processor = None
