"""What the command line imports before it has anything to do (benchmarks/RESULTS.md): `glasshouse --help` and
building the parser import no torch, transformers, TransformerLens, nnsight, streamlit, plotly or kaleido."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "transformer_lens", "nnsight", "streamlit", "plotly", "kaleido", "numpy")

_PROBE = """
import contextlib, io, json, sys
import app.cli
with contextlib.redirect_stdout(io.StringIO()):
    try:
        app.cli.main({argv!r})
    except SystemExit:
        pass
import probes
probes.DEFAULT_MODEL  # a light name through the lazy package
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def _heavy_imported(argv: list[str]) -> list[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", _PROBE.format(argv=argv, heavy=HEAVY)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_help_imports_nothing_heavy():
    assert _heavy_imported(["--help"]) == []
    assert _heavy_imported(["bb", "train", "--help"]) == []
    assert _heavy_imported(["models"]) == []  # lists the embedded models and the conversion cache


def test_probes_names_load_lazily_and_all_resolve():
    import probes

    for name in probes.__all__:
        assert getattr(probes, name) is not None
    from probes.model.loading import load_model

    assert probes.load_model is load_model


def test_bb_options_agree_with_the_bb_modules():
    from probes.bb import data, model, options, train

    assert options.SEQ_LEN == data.SEQ_LEN and options.ATTENTIONS == model.ATTENTIONS
    assert (options.OPTIMIZERS, options.PRESETS, options.DEFAULT_PRESET) == (
        train.OPTIMIZERS, train.PRESETS, train.DEFAULT_PRESET)


def test_capture_is_callable_after_its_module_was_imported():
    """`from probes import capture` gives the function even once the module `probes.model.capture` is imported."""
    code = ("import probes.model.capture, probes\nfrom probes import capture\n"
            "assert capture is probes.model.capture.capture\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "ok", out.stderr
