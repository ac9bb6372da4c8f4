# shellcheck shell=bash
# CodeVision's published RL stage on stock verl (0.9.1), shared by qwen2_5_vl_7b.sh and qwen3_vl_8b.sh.
# Sourced, not run: the model scripts set MODEL_TAG and the model's defaults, then source this file.
#
# Published run (docs/reproduce.md): GRPO, 8 rollouts per prompt, 64 prompts per step, lr 1e-6,
# KL loss 0.001 (no KL in the reward), clip 0.2 / 0.28, token-mean loss, 12 assistant turns,
# 16k response tokens, CodeVision's dense reward with an LLM judge, on 16 GPUs plus an 8-GPU judge.
#
# Environment (all optional):
#   MODEL_PATH            the SFT checkpoint (codevision train sft writes final/ with processor and template)
#   TRAIN_FILES           verl parquet of the RL set (codevision data filter ... --format verl)
#   VAL_FILES             verl parquet verl loads as its validation set (only run when TEST_FREQ > 0)
#   RUN_DIR               checkpoints, logs and the run's agent-loop YAML; on storage every node reads
#   NNODES, GPUS_PER_NODE the GPU nodes of the Ray cluster (2 x 8 as published)
#   CODEVISION_SANDBOX_URL, CODEVISION_SANDBOX_TOKEN   the `codevision sandbox serve` service
#                         (recipes/verl/sandbox_service.sh); unset URL: a local sandbox per agent-loop worker
#   SANDBOX_WORKERS, SANDBOX_TIMEOUT   that local sandbox's code cells at once (default: the node's
#                         CPUs shared among the agent-loop workers) and seconds per cell; a service
#                         sets its own with --workers and --timeout
#   JUDGE_URL, JUDGE_MODEL, JUDGE_CACHE, JUDGE_TIMEOUT  the judge (recipes/verl/judge_server.sh);
#                         JUDGE_CACHE is an SQLite file: give a node-local path (e.g. /tmp/...), as
#                         reward workers on every node open it and SQLite is unsafe over NFS
#   REWARD_SPEC           a RewardSpec YAML instead of CodeVision's dense reward
#   PYTHON                the interpreter with verl and codevision[verl]
#   Throughput: ROLLOUT_TP, ROLLOUT_GPU_MEMORY (model scripts), AGENT_WORKERS, PROMPT_LENGTH,
#   MAX_TOKENS_PER_GPU; schedule: TOTAL_EPOCHS, SAVE_FREQ, TEST_FREQ
#
# Arguments: extra Hydra overrides, appended last (they win). `--dry-run` first: write the run's
# agent-loop YAML, print the overrides one per line and launch nothing.

set -euo pipefail

DRY_RUN=0
if [[ "${1:-}" == "--dry-run" ]]; then
    DRY_RUN=1
    shift
fi

# Set by the model script that sources this file.
: "${MODEL_TAG:?}" "${MODEL_PATH:?}" "${ROLLOUT_TP:?}" "${ROLLOUT_GPU_MEMORY:?}"

PYTHON=${PYTHON:-python3}
TRAIN_FILES=${TRAIN_FILES:-data/rl.parquet}
VAL_FILES=${VAL_FILES:-data/rl-val.parquet}
RUN_DIR=${RUN_DIR:-runs/verl-grpo-${MODEL_TAG}}
NNODES=${NNODES:-2}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
TEST_FREQ=${TEST_FREQ:--1}
SAVE_FREQ=${SAVE_FREQ:-50}
TOTAL_EPOCHS=${TOTAL_EPOCHS:-1}
SANDBOX_URL=${CODEVISION_SANDBOX_URL:-}
SANDBOX_TOKEN=${CODEVISION_SANDBOX_TOKEN:-}
SANDBOX_WORKERS=${SANDBOX_WORKERS:-}
# 30 s per code cell, as recipes/grpo/.
SANDBOX_TIMEOUT=${SANDBOX_TIMEOUT:-30}
JUDGE_URL=${JUDGE_URL:-}
JUDGE_MODEL=${JUDGE_MODEL:-}
JUDGE_CACHE=${JUDGE_CACHE:-}
JUDGE_TIMEOUT=${JUDGE_TIMEOUT:-}
REWARD_SPEC=${REWARD_SPEC:-}

# The published limits. One variable each, so the Hydra overrides and the agent-loop YAML agree.
PROTOCOL=codevision
ROLLOUT_N=8
TRAIN_BATCH=64
MAX_TURNS=12
RESPONSE_LENGTH=16384
# The first prompt: about 300 tokens of system prompt, the question and an input image of at most
# 1,280 visual tokens (1,003,520 pixels, the SFT checkpoint's budget), with room for a long question
# or a second image. verl drops longer prompts when it loads the set (filter_overlong_prompts).
PROMPT_LENGTH=${PROMPT_LENGTH:-4096}

# Ray workers on other nodes do not share this shell's working directory: local paths become
# absolute (a hub id or a list is left as it is). Every node must see them at the same path.
absolute_if_local() {
    if [[ -e "$1" ]]; then
        echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
    else
        echo "$1"
    fi
}
MODEL_PATH=$(absolute_if_local "$MODEL_PATH")
TRAIN_FILES=$(absolute_if_local "$TRAIN_FILES")
VAL_FILES=$(absolute_if_local "$VAL_FILES")
[[ -n "$REWARD_SPEC" ]] && REWARD_SPEC=$(absolute_if_local "$REWARD_SPEC")
RUN_DIR=$(mkdir -p "$RUN_DIR" && cd "$RUN_DIR" && pwd)
# One micro-batch must hold the longest sequence (prompt + response); dynamic batching packs
# shorter ones up to this many tokens per GPU.
MAX_TOKENS_PER_GPU=${MAX_TOKENS_PER_GPU:-$((PROMPT_LENGTH + RESPONSE_LENGTH + 4096))}

# verl reads the agent loop's constructor arguments from the YAML file named by
# actor_rollout_ref.rollout.agent.agent_loop_config_path, loaded with OmegaConf.load inside every
# agent-loop worker; they are not part of the Hydra config, so no override reaches them. The run
# therefore gets its own copy of the shipped YAML with the sandbox and limits filled in (mode 600:
# it may hold the sandbox token, which is kept out of the Hydra config verl prints and logs).
AGENT_LOOP_YAML="$RUN_DIR/agent_loop.yaml"
REWARD_PY=$(
    RUN_AGENT_LOOP_YAML="$AGENT_LOOP_YAML" PROTOCOL="$PROTOCOL" SANDBOX_URL="$SANDBOX_URL" \
        SANDBOX_TOKEN="$SANDBOX_TOKEN" SANDBOX_WORKERS="$SANDBOX_WORKERS" SANDBOX_TIMEOUT="$SANDBOX_TIMEOUT" \
        MAX_TURNS="$MAX_TURNS" "$PYTHON" - <<'EOF'
import os
import sys

import yaml

from codevision.integrations.verl import agent_loop_config_path, reward_function_path

with open(agent_loop_config_path(), encoding="utf-8") as f:
    entries = yaml.safe_load(f)
entry = next((e for e in entries if e.get("name") == "codevision_agent"), None)
if entry is None:
    sys.exit(f"{agent_loop_config_path()}: no agent loop named codevision_agent")
values = {
    "protocol": os.environ["PROTOCOL"],
    "sandbox_url": os.environ["SANDBOX_URL"] or None,
    "sandbox_token": os.environ["SANDBOX_TOKEN"] or None,
    "sandbox_workers": int(os.environ["SANDBOX_WORKERS"]) if os.environ["SANDBOX_WORKERS"] else None,
    "sandbox_timeout": float(os.environ["SANDBOX_TIMEOUT"]),
    "max_turns": int(os.environ["MAX_TURNS"]),
}
missing = sorted(set(values) - set(entry))
if missing:
    sys.exit(f"{agent_loop_config_path()}: codevision_agent has no {', '.join(missing)}")
entry.update(values)
out = os.environ["RUN_AGENT_LOOP_YAML"]
fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.chmod(out, 0o600)  # also when an earlier copy had other permissions
with os.fdopen(fd, "w", encoding="utf-8") as f:
    yaml.safe_dump(entries, f, sort_keys=False)
print(reward_function_path())
EOF
)

OVERRIDES=(
    # ---- algorithm: GRPO on outcome scores, KL as a loss term only (as published)
    algorithm.adv_estimator=grpo
    algorithm.use_kl_in_reward=False

    # ---- data: 64 prompts per step; lengths as published
    data.train_files="$TRAIN_FILES"
    data.val_files="$VAL_FILES"
    data.train_batch_size="$TRAIN_BATCH"
    data.max_prompt_length="$PROMPT_LENGTH"
    data.max_response_length="$RESPONSE_LENGTH"
    data.image_key=images
    # A prompt that does not fit is dropped when the set is loaded, never cut inside an image.
    data.filter_overlong_prompts=True
    data.truncation=error

    # ---- model: the SFT checkpoint, its processor (pixel budget) and chat template as saved
    actor_rollout_ref.model.path="$MODEL_PATH"
    actor_rollout_ref.model.use_remove_padding=True
    actor_rollout_ref.model.enable_gradient_checkpointing=True
    # Log-probs without materialising the (tokens x vocabulary) logits of 20k-token sequences.
    actor_rollout_ref.model.use_fused_kernels=True

    # ---- actor: the published optimisation
    actor_rollout_ref.actor.strategy=fsdp2
    actor_rollout_ref.actor.optim.lr=1e-6
    # One optimiser step per 64-prompt batch (the released material states no mini-batch; this is
    # what the TRL recipe does: 512 completions per step, one update).
    actor_rollout_ref.actor.ppo_mini_batch_size="$TRAIN_BATCH"
    actor_rollout_ref.actor.ppo_epochs=1
    actor_rollout_ref.actor.use_kl_loss=True
    actor_rollout_ref.actor.kl_loss_coef=0.001
    actor_rollout_ref.actor.kl_loss_type=low_var_kl
    actor_rollout_ref.actor.clip_ratio_low=0.2
    actor_rollout_ref.actor.clip_ratio_high=0.28
    actor_rollout_ref.actor.loss_agg_mode=token-mean
    actor_rollout_ref.actor.entropy_coeff=0
    # The vision tower stays frozen, as in the SFT stage.
    actor_rollout_ref.actor.freeze_vision_tower=True
    actor_rollout_ref.actor.use_dynamic_bsz=True
    actor_rollout_ref.actor.ppo_max_token_len_per_gpu="$MAX_TOKENS_PER_GPU"
    # 7-8B with Adam sharded over 16 x 80 GB fits without CPU offload.
    actor_rollout_ref.actor.fsdp_config.param_offload=False
    actor_rollout_ref.actor.fsdp_config.optimizer_offload=False

    # ---- reference policy (the KL term): forward only, parked on the CPU between uses
    actor_rollout_ref.ref.log_prob_use_dynamic_bsz=True
    actor_rollout_ref.ref.log_prob_max_token_len_per_gpu="$MAX_TOKENS_PER_GPU"
    actor_rollout_ref.ref.fsdp_config.param_offload=True

    # ---- rollout: vLLM servers driven token in, token out by the codevision agent loop
    actor_rollout_ref.rollout.name=vllm
    actor_rollout_ref.rollout.mode=async
    actor_rollout_ref.rollout.n="$ROLLOUT_N"
    actor_rollout_ref.rollout.temperature=1.0
    actor_rollout_ref.rollout.top_p=1.0
    actor_rollout_ref.rollout.tensor_model_parallel_size="$ROLLOUT_TP"
    actor_rollout_ref.rollout.gpu_memory_utilization="$ROLLOUT_GPU_MEMORY"
    # The longest context a trajectory reaches; verl's default is the model's 128k+ positions.
    actor_rollout_ref.rollout.max_model_len=$((PROMPT_LENGTH + RESPONSE_LENGTH))
    # Images per conversation, inputs and tool outputs: vLLM's limit per request, and the loop's
    # (its max_images_in_context falls back to it; later images are named, not shown), as evaluation's
    # 24. A field of verl's RolloutConfig that its rollout.yaml leaves out, hence the '+'.
    +actor_rollout_ref.rollout.limit_images=24
    actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=True
    actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu="$MAX_TOKENS_PER_GPU"
    # verl's turn limit; the codevision loop falls back to it, and its YAML sets max_turns to the same value.
    actor_rollout_ref.rollout.multi_turn.max_assistant_turns="$MAX_TURNS"
    actor_rollout_ref.rollout.agent.agent_loop_config_path="$AGENT_LOOP_YAML"
    actor_rollout_ref.rollout.agent.default_agent_loop=codevision_agent
    # Workers that run the 512 rollouts of a step (render observations, call the sandbox, re-run the
    # processor on each finished sequence): 512 / 32 = 16 rollouts each. verl splits a batch evenly
    # among them, so the count must divide 64 x 8.
    actor_rollout_ref.rollout.agent.num_workers="${AGENT_WORKERS:-32}"

    # ---- reward: codevision's RewardSpec on each trajectory's recorded ops, outcomes and answer
    reward.custom_reward_function.path="$REWARD_PY"
    reward.custom_reward_function.name=compute_score

    # ---- trainer
    trainer.nnodes="$NNODES"
    trainer.n_gpus_per_node="$GPUS_PER_NODE"
    trainer.total_epochs="$TOTAL_EPOCHS"
    trainer.save_freq="$SAVE_FREQ"
    trainer.test_freq="$TEST_FREQ"
    trainer.val_before_train=False
    trainer.project_name=codevision
    trainer.experiment_name="grpo-${MODEL_TAG}"
    trainer.default_local_dir="$RUN_DIR/checkpoints"
    trainer.logger='["console","tensorboard"]'
    # verl's TensorBoard logger reads TENSORBOARD_DIR in the trainer actor, a Ray worker: on a cluster
    # joined with `ray start`, only Ray's runtime_env carries a variable there.
    +ray_kwargs.ray_init.runtime_env.env_vars.TENSORBOARD_DIR="$RUN_DIR/tensorboard"
)

# reward_kwargs is no key of verl's schema (verl reads it with .get), hence the '+'.
[[ -n "$REWARD_SPEC" ]] && OVERRIDES+=(+reward.custom_reward_function.reward_kwargs.reward_spec="$REWARD_SPEC")
[[ -n "$JUDGE_URL" ]] && OVERRIDES+=(+reward.custom_reward_function.reward_kwargs.judge_url="$JUDGE_URL")
[[ -n "$JUDGE_MODEL" ]] && OVERRIDES+=(+reward.custom_reward_function.reward_kwargs.judge_model="$JUDGE_MODEL")
[[ -n "$JUDGE_CACHE" ]] && OVERRIDES+=(+reward.custom_reward_function.reward_kwargs.judge_cache="$JUDGE_CACHE")
[[ -n "$JUDGE_TIMEOUT" ]] && OVERRIDES+=(+reward.custom_reward_function.reward_kwargs.judge_timeout="$JUDGE_TIMEOUT")
if [[ -z "$JUDGE_URL" ]]; then
    echo "note: JUDGE_URL is not set; answers are scored by the benchmarks' rules alone" >&2
fi

OVERRIDES+=("$@")

if [[ $DRY_RUN == 1 ]]; then
    printf '%s\n' "${OVERRIDES[@]}"
    exit 0
fi

exec "$PYTHON" -m verl.trainer.main_ppo "${OVERRIDES[@]}"
