"""The set-up lock (docs/setup.md): scripts/setup.sh installs every package at the version in
scripts/constraints.txt, so the README's commands give the same result whatever the index published since.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest

from scripts.lock import canonical, installed, off_lock, read_lock

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "scripts" / "constraints.txt"


def requirement_names() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {canonical(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", r).group(1)) for r in reqs}  # type: ignore[union-attr]


def test_the_lock_pins_every_declared_dependency_and_the_build_tools() -> None:
    pins = read_lock(LOCK)
    missing = requirement_names() - set(pins) - {"torch"}
    assert not missing, f"declared in pyproject.toml but not pinned in {LOCK.name}: {sorted(missing)}"
    assert {"pip", "setuptools", "transformers", "transformer-lens", "nnsight", "kernels"} <= set(pins)
    assert "torch" not in pins and "glasshouse" not in pins  # torch comes from GLASSHOUSE_TORCH


@pytest.mark.skipif(os.environ.get("GLASSHOUSE_UNLOCKED") == "1", reason="the unlocked drift job")
def test_this_environment_is_the_locked_one() -> None:
    assert off_lock(read_lock(LOCK), installed()) == []


def test_off_lock_names_each_drifted_package(tmp_path: Path) -> None:
    lock = tmp_path / "lock.txt"
    lock.write_text("# header\nTransformers==5.24.0  # a comment\nnumpy==2.0.0\n\nabsent-package==1.0\n")
    pins = read_lock(lock)
    assert pins == {"transformers": "5.24.0", "numpy": "2.0.0", "absent-package": "1.0"}
    assert off_lock(pins, {"transformers": "5.25.0", "numpy": "2.0.0"}) == ["transformers 5.25.0 (lock: 5.24.0)"]
    lock.write_text("transformers>=5\n")
    with pytest.raises(SystemExit, match="expected `name==version`"):
        read_lock(lock)


def test_setup_uses_the_lock_and_the_unlocked_job_does_not() -> None:
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert 'PIN=(-c "$LOCK")' in setup and "--no-build-isolation" in setup
    assert "python -m scripts.lock check" in setup
    venv = (ROOT / "scripts" / "venv.sh").read_text()
    assert ".venv-unlocked" in venv


def test_pyproject_license_is_an_spdx_string() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "Apache-2.0"
    assert any(r.startswith("setuptools>=77") for r in pyproject["build-system"]["requires"])
