#!/usr/bin/env bash
# The GPU check of the training paths, for a machine with one NVIDIA GPU, no network, and a Python
# 3.12 with torch, transformers, accelerate, peft, pandas, pyarrow, OpenCV, Pillow and matplotlib.
# The rest comes as wheels made by bench/gpu_wheels.sh (bench/wheels/, or $1). Runs codevision's
# `train sft` and TRL GRPO steps (scripted tool-call generations, real sandbox) on a random-weight
# Qwen2.5-VL of about 1.2 B parameters and prints tokens/s and the step-time split; the figures go to
# $OUT/gpu_check.json when OUT is set. At most 8 minutes.
#   bench/gpu_wheels.sh                 # here, with network
#   bench/gpu_check.sh                  # there
set -euo pipefail
cd "$(dirname "$0")/.."
wheels="${1:-bench/wheels}"
# datasets 5.2 (in the wheels) needs pyarrow >= 24 and huggingface_hub >= 1.31 from the machine.
python3 - <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version
needed = {"pyarrow": (24, 0), "huggingface_hub": (1, 31)}
for name, least in needed.items():
    try:
        found = version(name)
    except PackageNotFoundError:
        sys.exit(f"{name} is not installed; the wheels need {name} >= {'.'.join(map(str, least))}")
    if tuple(int(p) for p in found.split(".")[:2]) < least:
        sys.exit(f"{name} {found} is older than the {'.'.join(map(str, least))} the datasets wheel needs")
PY
python3 -m pip install --quiet --no-index --no-deps "$wheels"/*.whl
python3 -c "import codevision, datasets, torch, transformers, trl; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'cuda', torch.cuda.is_available())"
timeout 470 python3 bench/gpu_check.py --steps "${STEPS:-10}" ${OUT:+--json "$OUT/gpu_check.json"}
