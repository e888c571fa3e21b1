"""Atomic writes and strict JSON."""

from __future__ import annotations


def test_atomic_write_gives_normal_permissions(tmp_path):
    import os
    import stat

    from probes.io import write_json

    path = write_json(tmp_path / "r.json", {"a": 1.0, "b": float("nan")})
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert path.read_text().replace(" ", "").replace("\n", "") == '{"a":1.0,"b":null}'
