#!/usr/bin/env bash
# Set up, then run the main job on the embedded model: its canonical facts and the
# analyses that have landed, writing JSON results and HTML figures under runs/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
glasshouse info smollm2-135m
