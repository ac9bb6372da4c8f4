#!/usr/bin/env bash
# The wheels bench/gpu_check.sh installs on a GPU machine without network, built here: codevision
# itself and what that machine's Python 3.12 lacks (it has torch, transformers, accelerate, peft,
# pandas, pyarrow, OpenCV, Pillow and matplotlib). Written to bench/wheels/ (or $1); the total must
# stay within the 64 MiB a device run can carry.
#   bench/gpu_wheels.sh && du -sh bench/wheels
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench/wheels}"
rm -rf "$out" && mkdir -p "$out"
python3 -m pip wheel --quiet --no-deps --wheel-dir "$out" .
# Pure-Python packages and the few binary ones, for CPython 3.12 on x86-64 Linux, without their
# dependencies (those the machine has must not be replaced). Pinned to the versions `make test`
# runs with: --no-deps skips pip's checks, so an unpinned newest release could need a newer pyarrow
# or huggingface_hub than the machine has (gpu_check.sh checks those two before it starts).
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  --implementation cp --dest "$out" \
  trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 xxhash==4.1.0 pydantic==2.14.4 \
  pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 typer==0.29.2 click==8.5.1 \
  shellingham==1.5.4 rich==15.0.0 markdown-it-py==4.3.0 mdurl==0.1.2 pygments==2.21.0 httpx==0.29.0 \
  httpcore==1.0.9 h11==0.16.0 anyio==4.16.0 sniffio==1.3.1 idna==3.20 certifi==2026.10.19.post1
size=$(du -sm "$out" | cut -f1)
echo "$(ls "$out" | wc -l) wheels, ${size} MiB in $out"
if [ "$size" -gt 60 ]; then echo "over the 64 MiB a device run carries" >&2; exit 1; fi
