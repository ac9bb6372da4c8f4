"""codevision's agent loop as a verl ``AgentLoopBase``: CodeVision's RL rollouts on stock verl.

verl's own ``ToolAgentLoop`` runs one stateless tool call per ``create/execute/release`` and renders
observations through its own token builder, so a stateful Python session, the protocol's
observation text and codevision's lineage and rewards would all need patches. Instead the rollout
here *is* codevision's agent loop (:func:`codevision.agent.arun_agent`, the loop evaluation runs),
with a policy that generates through verl's server manager token-in/token-out:

* every prompt is rendered by :class:`~codevision.chat.ChatRenderer` (never verl's continuous
  token builder), and each turn's prompt must extend the previous prompt plus the sampled reply
  token for token, so the sequence verl trains on is the sequence the model was sampled from and
  the one ``codevision train`` would render for the same conversation;
* images are sized with the processor's pixel budget exactly as evaluation sizes them and go to the
  server as PIL images (never through ``qwen_vl_utils``, which needs torchvision); verl's
  post-processing re-runs the same processor on them and finds nothing to resize, so its grids
  match the image pads;
* sampled ids are kept as generated (mask 1), observation tokens get mask 0, and a rollout stops
  *before* an observation that would not fit ``rollout.response_length``, so no image span is ever
  cut and ``multi_modal_data`` holds exactly the images whose pads are in the sequence;
* tools run through :class:`~codevision.agent.tools.EpisodeTools` in one sandbox session per rollout
  (a local pool shared by the worker process, or a ``codevision sandbox serve`` service); a sandbox
  failure ends that rollout with the error recorded, never the run;
* the recorded trajectory (op traces, outcomes, shown images with their sizes and lineage, answer,
  stop reason) goes to the reward in ``extra_fields`` (see :mod:`.episode` and :mod:`.reward`).

Registered as ``codevision_agent`` through the shipped ``agent_loop.yaml``.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any, overload
from uuid import uuid4

from PIL import Image
from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopMetrics, AgentLoopOutput, register
from verl.utils.rollout_trace import rollout_trace_op

from codevision.agent import arun_agent
from codevision.agent.limits import Limits
from codevision.chat import ChatRenderer, ImageBudget, sampled_ids
from codevision.chat.messages import shown_images
from codevision.chat.render import RenderError
from codevision.cli.sandbox import TOKEN_ENV
from codevision.integrations.verl import AGENT_NAME
from codevision.integrations.verl.episode import episode_fields, prompt_of, task_from_row
from codevision.policies.base import Generation, Policy, PolicyError
from codevision.protocols import Protocol, get_protocol
from codevision.sandbox import RemoteSandbox, Sandbox
from codevision.task import Task
from codevision.trajectory import Message, Trajectory, Usage

DEFAULT_MAX_TURNS = Limits.model_fields["max_turns"].default
logger = logging.getLogger(__name__)


class ObservationOverflow(PolicyError):
    """The next observation does not fit in the response budget: the rollout ends before it."""


@register(AGENT_NAME)
class CodeVisionAgentLoop(AgentLoopBase):
    """One codevision episode per dataset row, generated through verl's rollout servers.

    Besides verl's own arguments it takes (from ``agent_loop.yaml``):

    - ``protocol``: the codevision protocol the rows were exported with (default ``codevision``),
      and ``system_prompt`` to replace its own;
    - ``sandbox_url`` / ``sandbox_token``: a ``codevision sandbox serve`` service (the token may come
      from ``$CODEVISION_SANDBOX_TOKEN``), the choice for multi-node rollouts; without a URL a local
      pool is shared by the rollouts of each agent-loop worker process, with ``sandbox_workers`` code
      cells running at once (default: this node's CPUs shared among ``agent.num_workers`` workers),
      ``sandbox_timeout`` seconds per cell and ``sandbox_memory_mb`` per session (a service applies
      the limits it was started with);
    - ``max_turns``: assistant turns per rollout (default ``multi_turn.max_assistant_turns``, else 12);
    - ``max_images_in_context``: images shown before later ones are only named (default
      ``rollout.limit_images``, else evaluation's 24);
    - ``sandbox``: an already built sandbox (programmatic use and tests; YAML cannot set it).
    """

    def __init__(
        self,
        trainer_config: Any,
        server_manager: Any,
        tokenizer: Any,
        processor: Any,
        dataset_cls: Any,
        data_config: Any,
        hf_model_type: str | None = None,
        *,
        protocol: str = "codevision",
        system_prompt: str | None = None,
        sandbox_url: str | None = None,
        sandbox_token: str | None = None,
        sandbox_workers: int | None = None,
        sandbox_timeout: float | None = None,
        sandbox_memory_mb: int | None = None,
        max_turns: int | None = None,
        max_images_in_context: int | None = None,
        sandbox: Sandbox | RemoteSandbox | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            trainer_config, server_manager, tokenizer, processor, dataset_cls, data_config, hf_model_type, **kwargs
        )
        if processor is None or getattr(processor, "image_processor", None) is None:
            raise ValueError(
                "the codevision agent loop needs a vision-language model's processor (verl loaded none for "
                f"{_get(self.config, 'actor_rollout_ref.model.path')!r})"
            )
        self.protocol = get_protocol(protocol, system_prompt=system_prompt)
        self.renderer = _renderer(processor)
        self.budget = image_budget(processor, self.mm_processor_kwargs)
        self.prompt_length = int(self.rollout_config.prompt_length)
        self.response_length = int(self.rollout_config.response_length)
        configured_turns = _get(self.rollout_config, "multi_turn.max_assistant_turns")
        self.max_turns = int(max_turns or configured_turns or DEFAULT_MAX_TURNS)
        shown = max_images_in_context or _get(self.rollout_config, "limit_images")
        self.max_images = int(shown or Limits.model_fields["max_images_in_context"].default)
        self.model_name = str(_get(self.config, "actor_rollout_ref.model.path") or "")
        if sandbox is None and self.protocol.uses_sandbox:
            agent_workers = int(_get(self.rollout_config, "agent.num_workers") or 8)
            sandbox = shared_sandbox(
                sandbox_url,
                sandbox_token,
                workers=sandbox_workers or max(2, (os.cpu_count() or 2) // max(1, agent_workers)),
                timeout=sandbox_timeout,
                memory_mb=sandbox_memory_mb,
            )
        self.sandbox = sandbox

    @rollout_trace_op
    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        priority = int(kwargs.pop("priority", 0) or 0)
        raw_prompt = list(kwargs["raw_prompt"])
        messages, images = prompt_of(raw_prompt)
        task = task_from_row(
            kwargs.get("extra_info"),
            images,
            data_source=kwargs.get("data_source"),
            reward_model=kwargs.get("reward_model"),
            raw_prompt=raw_prompt,
        )
        deterministic = bool(_get(self.rollout_config, "full_determinism"))
        policy = ServerPolicy(
            self,
            sampling_params,
            request_id=f"det-{priority}" if deterministic else uuid4().hex,
            priority=priority,
        )
        limits = Limits(
            max_turns=self.max_turns,
            max_tokens_per_turn=self.response_length,
            max_total_tokens=self.response_length,
            max_images_in_context=self.max_images,
        )
        trajectory = await arun_agent(task, policy, self.sandbox, RowPrompt(self.protocol, messages), limits)
        policy.finish(trajectory)
        return policy.output(task, trajectory)


class ServerPolicy(Policy):
    """The model behind verl's server manager, fed the exact ids of the conversation so far.

    Holds the rollout's token sequence: the prompt, then each sampled reply (mask 1) and each
    observation with the next generation prompt (mask 0), with the images in the order of their
    pads. Each prompt the agent loop asks for is rendered from the messages and must start with
    the sequence so far; only its new tail is appended.
    """

    def __init__(self, agent: CodeVisionAgentLoop, sampling_params: dict[str, Any], *, request_id: str, priority: int):
        self.agent = agent
        self.name = agent.model_name
        self.sampling_params = dict(sampling_params)
        self.request_id = request_id
        self.priority = priority
        self.ids: list[int] = []
        self.mask: list[int] = []
        self.logprobs: list[float] | None = []
        self.images: list[Image.Image] = []
        self.prompt_length = 0
        self.observations = 0
        self.replies = 0
        self.generation_seconds = 0.0
        self.num_preempted: int | None = None
        self.routed_experts: Any = None
        self.extra_fields: dict[str, Any] = {}
        self.overflow: str | None = None
        tokenizer = agent.renderer.tokenizer
        self.stop_ids = {agent.renderer.end_of_turn_id} | ({tokenizer.eos_token_id} - {None})

    async def image_budget(self) -> ImageBudget:
        return self.agent.budget

    async def generate(
        self, messages: Sequence[Message], images: Sequence[Image.Image], *, max_tokens: int
    ) -> Generation:
        agent = self.agent
        sizes = _Sizes(images)
        loop = asyncio.get_running_loop()
        try:
            rendered = await loop.run_in_executor(
                None,
                lambda: agent.renderer.render_tokens(
                    messages, sizes, sampled=sampled_ids(messages), add_generation_prompt=True
                ),
            )
        except RenderError as exc:
            # Data can cause this (tool output that spells an image token), so the rollout ends, recorded;
            # a template that is not prefix-preserving causes it for every rollout, hence the warning.
            logger.warning("codevision rollout %s stopped: %s", self.request_id, exc)
            raise PolicyError(f"the next prompt cannot be rendered: {exc}") from exc
        ids = rendered.input_ids
        if ids[: len(self.ids)] != self.ids:
            logger.warning("codevision rollout %s stopped: its prompt does not extend its tokens", self.request_id)
            raise PolicyError(
                "the rendered prompt does not extend the tokens sampled so far; the rollout stops rather than "
                "train on a sequence the model was not sampled from"
            )
        tail = ids[len(self.ids) :]
        if not self.ids and len(ids) > agent.prompt_length:
            raise ValueError(
                f"the prompt of task {messages[-1].text[:60]!r} has {len(ids)} tokens, more than "
                f"rollout.prompt_length={agent.prompt_length}; image tokens cannot be cut, so raise prompt_length or "
                "lower the processor's max_pixels"
            )
        if self.ids and len(ids) - self.prompt_length >= agent.response_length:
            self.overflow = (
                f"the observation after turn {self.replies - 1} ({len(tail)} tokens) does not fit in "
                f"rollout.response_length={agent.response_length} with {len(self.ids) - self.prompt_length} used"
            )
            raise ObservationOverflow(self.overflow)
        shown = shown_images(messages, images)
        checkpoint = (len(self.ids), len(self.images), self.observations)
        self.ids += tail
        self.mask += [0] * len(tail)
        if self.logprobs is not None:
            self.logprobs += [0.0] * len(tail)
        self.images += shown[len(self.images) :]
        if self.prompt_length:
            self.observations += 1
        else:
            self.prompt_length = len(ids)
            checkpoint = (len(self.ids), len(self.images), 0)  # the prompt itself always stays
        budget = min(max_tokens, agent.response_length - (len(self.ids) - self.prompt_length))
        started = time.monotonic()
        output = await agent.server_manager.generate(
            request_id=self.request_id,
            prompt_ids=list(self.ids),
            sampling_params={**self.sampling_params, "max_tokens": budget},
            image_data=list(self.images) or None,
            mm_processor_kwargs=agent._get_mm_processor_kwargs(),
            priority=self.priority,
        )
        seconds = time.monotonic() - started
        self.generation_seconds += seconds
        try:
            return self._reply(output, budget, len(ids), seconds)
        except PolicyError:
            # The reply is not kept, so neither is the observation it was sampled after (nor its images).
            length, count, self.observations = checkpoint
            del self.ids[length:], self.mask[length:], self.images[count:]
            if self.logprobs is not None:
                del self.logprobs[length:]
            raise

    def _reply(self, output: Any, budget: int, prompt_tokens: int, seconds: float) -> Generation:
        """Append a sampled reply to the sequence as it was generated; it becomes the turn's message."""
        reply = [int(token) for token in output.token_ids][:budget]
        vision = sorted(self.agent.renderer.vision_ids & set(reply))
        if vision:
            # A pad token the model wrote has no pixels behind it: the training forward pass would fail on
            # "image features and image tokens do not match".
            raise PolicyError(f"the model generated image or video pad tokens {vision}; the reply is not kept")
        self.ids += reply
        self.mask += [1] * len(reply)
        log_probs = list(output.log_probs or [])[: len(reply)]
        if self.logprobs is not None and len(log_probs) == len(reply):
            self.logprobs += [float(value) for value in log_probs]
        else:
            self.logprobs = None
        self.replies += 1
        if output.num_preempted is not None:
            self.num_preempted = (self.num_preempted or 0) + int(output.num_preempted)
        if output.routed_experts is not None:
            self.routed_experts = output.routed_experts
        self._merge_extra_fields(dict(output.extra_fields or {}))
        finished = bool(reply) and reply[-1] in self.stop_ids
        return Generation(
            text=self.agent.renderer.tokenizer.decode(reply, skip_special_tokens=True),
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=len(reply)),
            finish_reason="stop" if finished else "length",
            token_ids=reply,
            seconds=seconds,
        )

    def _merge_extra_fields(self, fields: dict[str, Any]) -> None:
        """The server's per-request fields, merged across turns the way verl's ToolAgentLoop merges them."""
        if not self.extra_fields:
            self.extra_fields.update(fields)
        elif fields.get("max_global_steps"):
            self.extra_fields["max_global_steps"] = fields["max_global_steps"]

    def finish(self, trajectory: Trajectory) -> None:
        """Record how the rollout ended: a prompt that stopped for lack of room is a token limit, not an error."""
        if self.overflow is not None:
            trajectory.stop_reason, trajectory.error = "max_tokens", None
        trajectory.metadata["verl"] = {
            "request_id": self.request_id,
            "prompt_tokens": self.prompt_length,
            "response_tokens": len(self.ids) - self.prompt_length,
            "images": len(self.images),
            "unshown_observation": self.overflow,
        }

    def output(self, task: Task, trajectory: Trajectory) -> AgentLoopOutput:
        """The rollout as verl's ``AgentLoopOutput`` (the episode itself in ``extra_fields``)."""
        prompt, response = self.ids[: self.prompt_length], self.ids[self.prompt_length :]
        logprobs = self.logprobs[self.prompt_length :] if self.logprobs is not None and self.replies else None
        routed = self.routed_experts
        if routed is not None:
            routed = routed[: len(self.ids)]
        extra_fields = {**self.extra_fields, "turn_scores": [], "tool_rewards": [], **episode_fields(task, trajectory)}
        metrics = AgentLoopMetrics(
            generate_sequences=self.generation_seconds,
            tool_calls=sum(turn.tool_seconds for turn in trajectory.turns),
            num_preempted=-1 if self.num_preempted is None else self.num_preempted,
        )
        return AgentLoopOutput(
            prompt_ids=prompt,
            response_ids=response,
            response_mask=self.mask[self.prompt_length :],
            response_logprobs=logprobs,
            routed_experts=routed,
            multi_modal_data={"images": list(self.images)} if self.images else {},
            mm_processor_kwargs=self.agent._get_mm_processor_kwargs(),
            num_turns=1 + self.replies + self.observations,
            metrics=metrics,
            extra_fields=extra_fields,
        )


class RowPrompt:
    """A protocol whose first messages are the row's own prompt (what verl's other loops would send).

    Rows exported by codevision hold exactly the protocol's first messages; rows from elsewhere keep
    their own system prompt and wording. Everything else is the protocol's.
    """

    def __init__(self, protocol: Protocol, messages: list[Message]) -> None:
        self._protocol = protocol
        self._messages = messages

    def initial_messages(self, question: str, image_indices: list[int]) -> list[Message]:
        return [message.model_copy(deep=True) for message in self._messages]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._protocol, name)


class _Sizes(Sequence[tuple[int, int]]):
    """The sizes of the model-sized images, read (and resized) only for the images a prompt shows."""

    def __init__(self, images: Sequence[Image.Image]) -> None:
        self._images = images

    def __len__(self) -> int:
        return len(self._images)

    @overload
    def __getitem__(self, index: int) -> tuple[int, int]: ...

    @overload
    def __getitem__(self, index: slice) -> list[tuple[int, int]]: ...

    def __getitem__(self, index: int | slice) -> tuple[int, int] | list[tuple[int, int]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self._images[index].size


def image_budget(processor: Any, mm_processor_kwargs: Any = None) -> ImageBudget:
    """The processor's pixel budget, with verl's ``data.mm_processor_kwargs`` overrides applied.

    verl passes those kwargs to the processor in post-processing; images sized to any other budget
    would be resized again there and their grids would no longer match the pads in the sequence.
    """
    budget = ImageBudget.from_processor(processor)
    kwargs = dict(mm_processor_kwargs or {})
    size = dict(kwargs.get("size") or {})
    highest = kwargs.get("max_pixels") or size.get("longest_edge")
    lowest = kwargs.get("min_pixels") or size.get("shortest_edge")
    if highest or lowest:
        budget = ImageBudget(budget.factor, int(lowest or budget.min_pixels), int(highest or budget.max_pixels))
    return budget


_lock = threading.Lock()
_renderers: dict[tuple[int, Any], tuple[Any, ChatRenderer]] = {}
_sandboxes: dict[tuple[Any, ...], Sandbox | RemoteSandbox] = {}


def _renderer(processor: Any) -> ChatRenderer:
    """One renderer per processor and chat template in a worker (verl builds a loop per sample)."""
    key = (id(processor), str(processor.chat_template))
    with _lock:
        if key not in _renderers:
            _renderers[key] = processor, ChatRenderer(processor)
        return _renderers[key][1]


def shared_sandbox(
    url: str | None,
    token: str | None,
    *,
    workers: int,
    timeout: float | None = None,
    memory_mb: int | None = None,
) -> Sandbox | RemoteSandbox:
    """The sandbox the rollouts of this process share: a client of ``url``, else a local pool.

    A local pool starts its fork server on the first session and is closed when the process exits.
    """
    if url:
        token = token or os.environ.get(TOKEN_ENV)
        if not token:
            raise ValueError(f"sandbox_url {url!r} needs a token: set sandbox_token or ${TOKEN_ENV}")
        key: tuple[Any, ...] = ("remote", url, token)
    else:
        key = ("local", workers, timeout, memory_mb)
    with _lock:
        if key not in _sandboxes:
            if url:
                _sandboxes[key] = RemoteSandbox(url, str(token))
            else:
                sandbox = Sandbox(workers=workers, timeout=timeout, memory_mb=memory_mb)
                atexit.register(sandbox.close)
                _sandboxes[key] = sandbox
        return _sandboxes[key]


def _get(config: Any, path: str) -> Any:
    """``config.a.b.c`` of a DictConfig, dataclass or dict, or None where any part is missing."""
    value = config
    for name in path.split("."):
        if value is None:
            return None
        value = value.get(name) if hasattr(value, "get") else getattr(value, name, None)
    return value
