"""Write docs/support.md: run the conformance suite (tests/conformance/) and tabulate its outcomes.

    python -m scripts.support_matrix

The suite's last test renders the family x command matrix; with GLASSHOUSE_WRITE_SUPPORT=1 it writes
the file instead of comparing against it. A failing check fails the run and writes nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file, this folder would lead sys.path and its module names could shadow installed packages
# (benchmarks/kernels.py once hid the `kernels` distribution): the repository root leads instead.
if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    env = {**os.environ, "GLASSHOUSE_WRITE_SUPPORT": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    sys.exit(subprocess.call([sys.executable, "-m", "pytest", "-q", "tests/conformance"], cwd=ROOT, env=env))
