"""Reading a batch plan names the real cause of a failure (probes.errors.cause): a damaged plan file, and a
model check that fails with an ImportError or a MemoryError.

Each test fails against the code before the causes were named (its comment says how).
"""

from __future__ import annotations

import pytest

from app.batch.plan import PlanError, parse_plan, read_plan

SHADOWED = "cannot import name 'CUDAProperties' from 'kernels' (/x/benchmarks/kernels.py)"


def _plan_error(data, exc: BaseException) -> str:
    def check(spec: str) -> None:
        raise exc

    with pytest.raises(PlanError) as info:
        parse_plan(data, check_models=check)
    return str(info.value)


def test_model_check_import_error_is_named():
    # old: "model 'm' cannot be loaded: cannot import name ..." without the type or what to do
    msg = _plan_error({"models": ["m"]}, ImportError(SHADOWED))
    assert f"model 'm' cannot be loaded: ImportError: {SHADOWED}" in msg and "shadowing" in msg


def test_model_check_memory_error_is_named():
    # old: "model 'm' cannot be loaded: " and nothing after it (a bare MemoryError has no text)
    msg = _plan_error({"models": ["m"]}, MemoryError())
    assert "model 'm' cannot be loaded: MemoryError. There was not enough memory" in msg


def test_model_check_glasshouse_error_keeps_its_message():
    # unchanged: a GlasshouseError's message already says what to do, so it is not wrapped again
    from probes.errors import ModelLoadError

    msg = _plan_error({"models": ["m"]}, ModelLoadError("No such folder: m. Give an existing model folder."))
    assert "model 'm' cannot be loaded: No such folder: m." in msg


def test_damaged_plan_file_names_the_error(tmp_path):
    # old: "is not valid TOML: <text>." without the type; a binary file escaped as a bare UnicodeDecodeError
    bad = tmp_path / "bad.toml"
    bad.write_text("models = [\n")
    with pytest.raises(PlanError, match=r"bad.toml is not valid TOML \(TOMLDecodeError: "):
        read_plan(bad)
    bad.write_bytes(b"\xff\xfe\x00models")
    with pytest.raises(PlanError, match=r"bad.toml is not valid TOML \(UnicodeDecodeError: "):
        read_plan(bad)
