"""A tiny, randomly initialised Qwen-VL model built offline, and a real server process for it.

Tests and demos need a model that goes through exactly the code a real checkpoint goes through
(processor, chat template, image tokens, generation, an OpenAI-compatible server) without
downloading anything. :func:`build_tiny_qwen_vl` writes such a model folder in a few seconds:
a Qwen2.5-VL or Qwen3-VL architecture a few dozen units wide, a byte-level BPE tokenizer
trained here with Qwen's special tokens, a Qwen-style chat template and an image-only processor.
Its replies are noise, but every token of them is real.

:class:`TransformersServer` runs ``transformers serve`` on that folder, on a free local port.

Needs torch and transformers (imported when a model is built, not when this module is imported).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

Family = Literal["qwen2_5_vl", "qwen3_vl"]

# Tokens the Qwen-VL processors, chat templates and servers look for. Each is one token; all are
# suppressed during generation except <|im_end|>, which ends a reply (see _generation_config).
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Added (single) tokens that are ordinary text for decoding, as in Qwen's own tokenizers.
TOOL_TOKENS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>")
END_OF_TURN = "<|im_end|>"

# Qwen2.5-VL's format: a default system prompt, roles rendered as given, and no notion of tool
# messages (callers must turn them into user messages themselves).
QWEN2_5_VL_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if loop.first and message['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}{%- for part in message['content'] %}"
    "{%- if part['type'] == 'image' or 'image' in part or 'image_url' in part %}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif 'text' in part %}{{- part['text'] }}"
    "{%- endif %}{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Qwen3-VL's format: no default system prompt; consecutive tool messages become one user turn,
# each result wrapped in <tool_response> (images inside tool results allowed).
QWEN3_VL_CHAT_TEMPLATE = (
    "{%- macro render(content) %}"
    "{%- if content is string %}{{- content }}"
    "{%- else %}{%- for part in content %}"
    "{%- if part['type'] == 'image' or 'image' in part or 'image_url' in part %}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif 'text' in part %}{{- part['text'] }}"
    "{%- endif %}{%- endfor %}{%- endif %}"
    "{%- endmacro %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'tool' %}"
    "{%- if loop.first or messages[loop.index0 - 1]['role'] != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' + render(message['content']) + '\\n</tool_response>' }}"
    "{%- if loop.last or messages[loop.index0 + 1]['role'] != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + render(message['content']) + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Text the tokenizer is trained on: enough ASCII words and code for merges that look like a
# real vocabulary. The model never learns from it; its weights stay random.
_CORPUS = """\
The quick brown fox jumps over the lazy dog. What is written on the receipt? The total is 12.50.
Crop the image to the region of interest, then zoom in and read the text again.
import numpy as np
from PIL import Image
image = Image.open("input.png")
crop = image.crop((10, 20, 110, 220)).resize((200, 400))
print(crop.size, np.asarray(crop).mean())
def answer(question: str) -> str:
    return question.strip().lower()
<answer>42</answer> The answer is 7. There are three cats and two dogs in the picture.
0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ !"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~
"""
TOKENIZER_VOCAB_SIZE = 512


@dataclass(frozen=True)
class _Shape:
    """What differs between the two families: towers, patch size, template and processor class."""

    processor: str
    patch_size: int
    text: dict[str, Any]
    vision: dict[str, Any]
    chat_template: str


_TEXT_WIDTH = 64
_SHAPES: dict[str, _Shape] = {
    "qwen2_5_vl": _Shape(
        processor="Qwen25VLImageOnlyProcessor",
        patch_size=14,
        text={
            "hidden_size": _TEXT_WIDTH,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 8192,
            # head_dim 16: the multimodal rotary sections (time, height, width) add up to 16 / 2.
            "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [2, 3, 3]},
        },
        vision={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": _TEXT_WIDTH,
            "window_size": 56,
            "fullatt_block_indexes": [1],
        },
        chat_template=QWEN2_5_VL_CHAT_TEMPLATE,
    ),
    "qwen3_vl": _Shape(
        processor="Qwen3VLImageOnlyProcessor",
        patch_size=16,
        text={
            "hidden_size": _TEXT_WIDTH,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "max_position_embeddings": 8192,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5_000_000.0,
                "mrope_section": [2, 3, 3],
                "mrope_interleaved": True,
            },
        },
        vision={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": _TEXT_WIDTH,
            "num_position_embeddings": 256,
            "deepstack_visual_indexes": [1],
        },
        chat_template=QWEN3_VL_CHAT_TEMPLATE,
    ),
}
MERGE_SIZE = 2
# The processor's own pixel budget: at most 64 image tokens per image, so prompts stay short.
MAX_IMAGE_TOKENS = 64


def build_tiny_qwen_vl(
    directory: str | Path,
    *,
    family: Family = "qwen2_5_vl",
    seed: int = 0,
    corpus: Sequence[str] | None = None,
    vocab_size: int = TOKENIZER_VOCAB_SIZE,
    width: int | None = None,
    layers: int | None = None,
    tool_calls: bool = False,
) -> Path:
    """Write a tiny random Qwen2.5-VL (or Qwen3-VL) model folder into ``directory`` and return it.

    The folder loads with ``AutoProcessor`` / ``AutoModelForImageTextToText`` (``trust_remote_code``
    for the processor) and with ``transformers serve --trust-remote-code``. The same ``seed`` gives
    the same weights. Takes a few seconds on a CPU.

    A model meant to be *trained* gets its tokenizer from ``corpus`` (the lines it will read and
    write, so its turns are a few dozen tokens instead of hundreds of bytes), a ``width`` (the
    language model's hidden size, a multiple of 32; the vision tower is half as wide) and a number of
    ``layers``, and ``tool_calls=True``, which lets generation emit the tool-call tokens (a random
    model must not, an SFT-trained one must).
    """
    if family not in _SHAPES:
        raise ValueError(f"unknown family {family!r}; choose one of {sorted(_SHAPES)}")
    shape = _resized(_SHAPES[family], width, layers)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    import torch
    from transformers import AutoModelForImageTextToText

    from codevision.testing import qwen_vl_processor

    tokenizer = _train_tokenizer(corpus or _CORPUS.splitlines(), vocab_size)
    processor_class = getattr(qwen_vl_processor, shape.processor)
    # Writes the class's source file and an ``auto_map`` into the folder, so AutoProcessor (and the
    # server) can build it with trust_remote_code.
    processor_class.register_for_auto_class("AutoProcessor")
    processor = processor_class(
        image_processor=_image_processor(shape.patch_size), tokenizer=tokenizer, chat_template=shape.chat_template
    )
    processor.save_pretrained(directory)

    config = _model_config(family, shape, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    model.generation_config = _generation_config(tokenizer, tool_calls=tool_calls)
    model.save_pretrained(directory)
    return directory


def _resized(shape: _Shape, width: int | None, layers: int | None) -> _Shape:
    """``shape`` with a language model ``width`` wide (head size 16, as the rotary sections need) and
    ``layers`` deep, and a vision tower half as wide."""
    if width is None and layers is None:
        return shape
    width = width or shape.text["hidden_size"]
    if width % 32:
        raise ValueError(f"width {width} is not a multiple of 32")
    text = {
        **shape.text,
        "hidden_size": width,
        "intermediate_size": 2 * width,
        "num_attention_heads": width // 16,
        "num_key_value_heads": width // 32,
        "num_hidden_layers": layers or shape.text["num_hidden_layers"],
    }
    vision = {
        **shape.vision,
        "hidden_size": width // 2,
        "intermediate_size": width,
        "num_heads": width // 32,
        "out_hidden_size": width,
    }
    return dataclasses.replace(shape, text=text, vision=vision)


def _train_tokenizer(corpus: Sequence[str], vocab_size: int) -> Any:
    """A Qwen2 tokenizer (byte-level BPE, Qwen's pre-tokenizer) with a vocabulary trained here."""
    from tokenizers import AddedToken
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    base = Qwen2Tokenizer()
    tokenizer = base.train_new_from_iterator(
        [list(corpus)],
        vocab_size=vocab_size,
        new_special_tokens=list(SPECIAL_TOKENS),
        # The trainer's progress bar writes to file descriptor 1, past any redirection of sys.stdout.
        show_progress=False,
    )
    tokenizer.add_tokens([AddedToken(token, special=False, normalized=False) for token in TOOL_TOKENS])
    tokenizer.eos_token = END_OF_TURN
    tokenizer.pad_token = "<|endoftext|>"
    return tokenizer


def _image_processor(patch_size: int) -> Any:
    """Qwen's image processor (the PIL one: the default needs torchvision) with a small pixel budget."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    factor = patch_size * MERGE_SIZE
    return Qwen2VLImageProcessorPil(
        patch_size=patch_size,
        merge_size=MERGE_SIZE,
        temporal_patch_size=2,
        min_pixels=4 * factor * factor,
        max_pixels=MAX_IMAGE_TOKENS * factor * factor,
    )


def _model_config(family: Family, shape: _Shape, tokenizer: Any) -> Any:
    from transformers import Qwen2_5_VLConfig, Qwen3VLConfig

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    text = {
        **shape.text,
        "vocab_size": len(tokenizer),
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids[END_OF_TURN],
        "pad_token_id": ids["<|endoftext|>"],
    }
    vision = {**shape.vision, "patch_size": shape.patch_size, "spatial_merge_size": MERGE_SIZE}
    config_class = Qwen2_5_VLConfig if family == "qwen2_5_vl" else Qwen3VLConfig
    return config_class(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )


def _generation_config(tokenizer: Any, *, tool_calls: bool = False) -> Any:
    """Greedy by default; never emits a special or tool token except the end of the turn (and, with
    ``tool_calls``, the tool-call tags).

    Random weights would otherwise produce ``<|image_pad|>`` (which breaks the next turn's image
    count) or an unparseable ``<tool_call>`` (which makes servers fail the request).
    """
    from transformers import GenerationConfig

    end = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    suppressed = sorted(
        tokenizer.convert_tokens_to_ids(token)
        for token in (*SPECIAL_TOKENS, *TOOL_TOKENS)
        if token != END_OF_TURN and not (tool_calls and token in ("<tool_call>", "</tool_call>"))
    )
    return GenerationConfig(
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=end,
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        suppress_tokens=suppressed,
        do_sample=False,
    )


# ---------------------------------------------------------------------------------------------- server


def hf_cache_entry(cache_dir: str | Path, model_dir: str | Path, name: str) -> str:
    """Make ``model_dir`` appear in a Hugging Face cache as the model ``local/<name>``; returns that id.

    ``transformers serve`` lists (``/v1/models``) only models found in the cache, never a plain
    folder, so clients that check the model list need this entry. The snapshot is a symbolic link,
    nothing is copied.
    """
    revision = hashlib.sha1(str(Path(model_dir).resolve()).encode()).hexdigest()
    repo = Path(cache_dir) / f"models--local--{name}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "snapshots").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision, encoding="utf-8")
    snapshot = repo / "snapshots" / revision
    if not snapshot.exists():
        snapshot.symlink_to(Path(model_dir).resolve(), target_is_directory=True)
    return f"local/{name}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TransformersServer:
    """``transformers serve`` for one local model folder, on 127.0.0.1, for the duration of a ``with``.

    The model is registered in a private Hugging Face cache (see :func:`hf_cache_entry`) and pinned,
    so requests must name :attr:`model_name`; :attr:`url` is the server's root (clients that follow
    the OpenAI convention add ``/v1``). Entering waits until the model is loaded and the server
    answers; leaving stops the process and removes the cache. :meth:`logs` returns what the server
    printed, also after it stopped, and start-up failures quote it.
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        name: str | None = None,
        port: int | None = None,
        startup_timeout: float = 120.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.model_dir = Path(model_dir).resolve()
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = name or self.model_dir.name
        self.model_name = f"local/{self.name}"
        self.startup_timeout = startup_timeout
        self.extra_args = tuple(extra_args)
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._log = ""

    def __enter__(self) -> TransformersServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def command(self) -> list[str]:
        """The command line, using the ``transformers`` script installed next to this Python."""
        script = Path(sys.executable).with_name("transformers")
        executable = str(script) if script.exists() else shutil.which("transformers")
        if executable is None:
            raise RuntimeError("the `transformers` command is not installed: pip install 'transformers[serving]'")
        return [
            executable,
            "serve",
            "--device",
            "cpu",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--trust-remote-code",
            *self.extra_args,
            self.model_name,
        ]

    def start(self) -> None:
        """Start the server and wait until it answers ``/health``; raises with its log if it does not."""
        if self._process is not None:
            raise RuntimeError(f"the server at {self.url} is already running")
        self._workdir = Path(tempfile.mkdtemp(prefix="codevision-serve-"))
        hf_cache_entry(self._workdir / "hub", self.model_dir, self.name)
        env = {
            **os.environ,
            "HF_HUB_CACHE": str(self._workdir / "hub"),
            "HF_HUB_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        with (self._workdir / "server.log").open("wb") as log:
            self._process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        deadline = time.monotonic() + self.startup_timeout
        while not self._healthy():
            if self._process.poll() is not None:
                code = self._process.returncode
                self.stop()
                raise RuntimeError(f"transformers serve exited with status {code} while starting:\n{self.logs()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"transformers serve did not answer within {self.startup_timeout:.0f} s:\n{self.logs()}"
                )
            time.sleep(0.25)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:  # refused while starting, or a timeout (URLError is an OSError)
            return False

    def logs(self) -> str:
        """Everything the server printed so far."""
        if self._workdir is not None:
            with contextlib.suppress(FileNotFoundError):
                return (self._workdir / "server.log").read_text(encoding="utf-8", errors="replace")
        return self._log

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s) and remove its cache; the logs are kept."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._workdir is not None:
            self._log = self.logs()
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
