"""The sealed model interface (docs/architecture.md, "One model interface"): analyses use HookedModel's
methods and properties only; only the model layer (probes/model/) touches HF modules, the TransformerLens
bridge or the architecture adapter.

Every analysis module's source (everything outside probes/model/: probes/*.py, probes/successor, probes/bb,
circuits, saes, app) is parsed and searched for the ways in: attributes (`model.bridge`, `.adapter`,
`.hf_model`, their private names, an nnsight model's `._module`, a bridge block's `._original_component`),
the same names through getattr with a constant, imports of transformers' modeling internals, and
imports of the model layer's private names or its adapter machinery. `model.tl`, the locked public
TransformerLens view, is allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
ANALYSES = ("probes", "circuits", "saes", "app")
MODEL_LAYER = ROOT / "probes" / "model"

# attribute names that reach past HookedModel into what it wraps
FORBIDDEN_ATTRS = frozenset({"bridge", "_bridge", "adapter", "_adapter", "hf_model", "_hf_model", "_hf", "hf",
                             "_module", "_original_component"})
# transformers' internals: modeling code, its utilities and per-family packages (public top-level names such
# as `from transformers import OPTConfig` are allowed: probes/bb writes its toy models as HF checkpoints)
FORBIDDEN_IMPORTS = ("transformers.models", "transformers.modeling_", "transformers.pytorch_utils",
                     "transformers.integrations", "transformer_lens.model_bridge")
# the adapter machinery of probes/model/architecture.py and the bridge wrapper: only the model layer holds them
FORBIDDEN_MODEL_NAMES = frozenset({"ArchAdapter", "ADAPTERS", "adapter_for", "LockedBridge"})


def leaks(source: str, filename: str = "<snippet>") -> list[str]:
    """Every place in `source` where an analysis reaches past the HookedModel interface, as 'line: what'."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRS:
            found.append(f"{node.lineno}: .{node.attr}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
              and node.args[1].value in FORBIDDEN_ATTRS):
            found.append(f"{node.lineno}: {node.func.id}(..., {node.args[1].value!r})")
        elif isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names if a.name.startswith(FORBIDDEN_IMPORTS)]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith(FORBIDDEN_IMPORTS):
                found.append(f"{node.lineno}: from {node.module} import ...")
            elif node.module == "transformers":
                found += [f"{node.lineno}: from transformers import {a.name}" for a in node.names
                          if a.name.startswith(("modeling_", "models"))]
            elif node.module.startswith("probes.model"):
                found += [f"{node.lineno}: from {node.module} import {a.name}" for a in node.names
                          if a.name.startswith("_") or a.name in FORBIDDEN_MODEL_NAMES]
    return found


def analysis_files() -> list[Path]:
    files = [p for top in ANALYSES for p in sorted((ROOT / top).rglob("*.py"))]
    return [p for p in files if MODEL_LAYER not in p.parents]


def test_the_walk_covers_every_analysis_package_and_skips_the_model_layer() -> None:
    files = {p.relative_to(ROOT).as_posix() for p in analysis_files()}
    for expected in ("probes/sinks.py", "probes/attention_stats.py", "probes/remote.py", "probes/successor/ov.py",
                     "probes/bb/train.py", "circuits/forward.py", "circuits/peap.py", "saes/activation_store.py",
                     "app/views/sinks.py"):
        assert expected in files, expected
    assert not any(f.startswith("probes/model/") for f in files)


def test_no_analysis_reaches_past_the_hooked_model() -> None:
    found = {p.relative_to(ROOT).as_posix(): leaks(p.read_text(), str(p)) for p in analysis_files()}
    found = {path: hits for path, hits in found.items() if hits}
    assert not found, "analyses reaching into the model layer (add a HookedModel method instead): " + "; ".join(
        f"{path} line {', line '.join(hits)}" for path, hits in found.items())


@pytest.mark.parametrize("snippet", [
    "names = model.bridge.hook_dict",
    "cfg = model.hf_model.config",
    "mlp = model.adapter.mlp(0)",
    "x = self.model._hf.lm_head",
    "first = getattr(block, '_original_component', block)",
    "mod = lm._module",
    "b = getattr(model, 'bridge')",
    "from transformers.models.llama.modeling_llama import LlamaAttention",
    "import transformers.modeling_utils",
    "from transformers import modeling_utils",
    "from probes.model.capture import _as_tokens",
    "from probes.model.architecture import adapter_for",
    "from probes.model.hooked_model import LockedBridge",
])
def test_the_check_finds_each_kind_of_leak(snippet: str) -> None:
    source = f"def analysis(model, lm, block):\n    {snippet}\n"
    assert leaks(source) and leaks(source)[0].startswith("2: ")


def test_the_public_interface_passes() -> None:
    source = """
from transformers import OPTConfig
from probes.model.architecture import apply_rotary
from probes.model.capture import as_tokens
from probes.model.hooked_model import HookedModel


def analysis(model: HookedModel, ids):
    names = model.hook_names()
    w = model.W_O[0] @ model.W_U
    eps = model.norm_eps("final")
    cs = model.rotary_cos_sin(4, w)
    return model.run_with_hooks(ids, fwd_hooks=[]), model.tl.cfg, model.facts.family, getattr(model, "facts")
"""
    assert leaks(source) == []
