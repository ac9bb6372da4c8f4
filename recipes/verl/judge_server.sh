#!/usr/bin/env bash
# The judge CodeVision's reward asks when the benchmark's rule leaves an answer open: any
# OpenAI-compatible server; here vLLM on one node of 8 GPUs (the published run's judge size).
#   JUDGE_MODEL=/models/your-judge bash recipes/verl/judge_server.sh
# Then start the trainer with JUDGE_URL=http://THIS-HOST:8000/v1 and JUDGE_MODEL=judge.
# The judge answers at temperature 0 with "1" or "0"; its verdicts are cached when JUDGE_CACHE is set.
set -euo pipefail

# The released material does not name the judge model, so none is assumed.
: "${JUDGE_MODEL:?set JUDGE_MODEL to the judge checkpoint (a folder or a hub id)}"
PORT=${PORT:-8000}
# One replica over 8 GPUs suits a 70B-class judge; for a model that fits one GPU, set
# TENSOR_PARALLEL=1 DATA_PARALLEL=8 for 8 replicas behind the one port.
TENSOR_PARALLEL=${TENSOR_PARALLEL:-8}
DATA_PARALLEL=${DATA_PARALLEL:-1}
# Prompts are the question, the reference and the policy's answer: short.
MAX_MODEL_LEN=${MAX_MODEL_LEN:-8192}

# No --api-key: the reward workers' client sends OPENAI_API_KEY, which would have to be set on every
# Ray node; keep the port on the cluster's private network instead.
exec vllm serve "$JUDGE_MODEL" --served-model-name judge --host 0.0.0.0 --port "$PORT" \
    --tensor-parallel-size "$TENSOR_PARALLEL" --data-parallel-size "$DATA_PARALLEL" --max-model-len "$MAX_MODEL_LEN"
