#!/usr/bin/env bash
# CodeVision's published RL stage for Qwen3-VL-8B on verl: GRPO n=8, 64 prompts, lr 1e-6, KL loss
# 0.001, clip 0.2/0.28, token-mean, 12 turns, 16k response tokens, the dense reward (common.sh).
# Run on the Ray head node of 2 x 8 GPUs, after sandbox_service.sh and judge_server.sh are up:
#   CODEVISION_SANDBOX_URL=http://sandbox-host:8765 CODEVISION_SANDBOX_TOKEN=... \
#   JUDGE_URL=http://judge-host:8000/v1 TRAIN_FILES=data/rl.parquet bash recipes/verl/qwen3_vl_8b.sh
# Extra Hydra overrides go last; --dry-run prints the overrides and launches nothing.
set -euo pipefail

MODEL_TAG=qwen3_vl_8b
MODEL_PATH=${MODEL_PATH:-runs/sft-qwen3_vl_8b/final}
# 17 GB of bf16 weights fit one 80 GB GPU with room for KV cache: one vLLM replica per GPU gives
# 16 replicas, each serving 32 of the step's 512 rollouts.
ROLLOUT_TP=${ROLLOUT_TP:-1}
# vLLM's share of each GPU while it is awake; FSDP's shards, optimizer state and the woken
# training engine share the rest (verl's Qwen3-VL-8B example uses 0.6).
ROLLOUT_GPU_MEMORY=${ROLLOUT_GPU_MEMORY:-0.6}

# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
