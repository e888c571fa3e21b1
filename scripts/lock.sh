#!/usr/bin/env bash
# Refresh the set-up lock, scripts/constraints.txt (docs/setup.md): resolve every dependency afresh
# from pyproject's ranges in a new .venv-lock, freeze it, and then run `bash scripts/test.sh` (which
# installs from the new lock) before committing the lock.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .venv-lock
GLASSHOUSE_UNLOCKED=1 GLASSHOUSE_VENV=.venv-lock GLASSHOUSE_SKIP_CHROMIUM=1 bash scripts/setup.sh
.venv-lock/bin/python -m scripts.lock write scripts/constraints.txt
rm -rf .venv-lock
echo "Now run: bash scripts/test.sh   (it installs from the new lock), then commit scripts/constraints.txt"
