"""Start loading the default model when the server starts, before the first browser connects.

`glasshouse app` calls `start(...)` in the server process; the app's `get_model` calls `wait(...)`
first, so a session that arrives while the model is loading waits for that load instead of
starting a second one. Errors are left for the session to report (it loads again and shows them).
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_jobs: dict[tuple[str, str, str], threading.Thread] = {}


def _work(spec: str, device: str, dtype: str) -> None:
    try:
        import importlib

        from probes.corpus import documents
        from probes.loading import load_model

        load_model(spec, device=device, dtype=dtype)
        documents("prose")  # the natural-text regime samples from it; parsing takes seconds
        try:
            importlib.import_module("probes.sinks")
        except ImportError:
            pass
    except Exception:  # noqa: BLE001 - the session repeats the load and shows the error
        return


def start(spec: str, device: str, dtype: str) -> None:
    """Load (spec, device, dtype) in a background thread, once."""
    key = (spec, device, dtype)
    with _lock:
        if key in _jobs:
            return
        thread = threading.Thread(target=_work, args=key, name=f"prewarm-{spec}", daemon=True)
        _jobs[key] = thread
        thread.start()


def wait(spec: str, device: str, dtype: str) -> None:
    """Block until a prewarm of the same model (if any) has finished."""
    with _lock:
        thread = _jobs.get((spec, device, dtype))
    if thread is not None:
        thread.join()
