# Sourced by setup.sh, test.sh, run.sh and lock.sh: which virtual environment this run uses.
# Locked runs (the default) use .venv, installed from scripts/constraints.txt; GLASSHOUSE_UNLOCKED=1 uses
# .venv-unlocked, resolved afresh from pyproject's open ranges (the drift job); GLASSHOUSE_VENV overrides both.
if [ "${GLASSHOUSE_UNLOCKED:-0}" = "1" ]; then
  GLASSHOUSE_VENV=${GLASSHOUSE_VENV:-.venv-unlocked}
else
  GLASSHOUSE_VENV=${GLASSHOUSE_VENV:-.venv}
fi
export GLASSHOUSE_VENV
