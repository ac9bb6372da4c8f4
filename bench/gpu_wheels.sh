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
# dependencies (those the machine has must not be replaced).
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  --implementation cp --dest "$out" \
  'trl==1.16.0' 'datasets>=3.0' dill multiprocess xxhash 'pydantic>=2.6' pydantic-core annotated-types \
  typing-inspection 'typer>=0.12' click shellingham 'rich>=13.7' markdown-it-py mdurl pygments \
  'httpx>=0.27' httpcore h11 anyio sniffio idna certifi
size=$(du -sm "$out" | cut -f1)
echo "$(ls "$out" | wc -l) wheels, ${size} MiB in $out"
if [ "$size" -gt 60 ]; then echo "over the 64 MiB a device run carries" >&2; exit 1; fi
