#!/usr/bin/env bash
# Set up, then run the main job on the embedded model (SmolLM2-135M): its canonical facts, the
# attention-sink report (natural / random / repeat inputs), the extreme-token report, and the
# successor-head search. JSON results and HTML figures go to runs/<command>/smollm2-135m/.
# Then open the app with `glasshouse app` to explore the same analyses in a browser.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/venv.sh
. "$GLASSHOUSE_VENV/bin/activate"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
glasshouse info smollm2-135m
glasshouse sinks
glasshouse extreme
glasshouse successor
echo
echo "Results: runs/. Explore them in a browser with: . .venv/bin/activate && glasshouse app"
