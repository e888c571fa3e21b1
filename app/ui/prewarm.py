"""Start loading the default model when the server starts, before the first browser connects.

`glasshouse app` calls `start(...)` in the server process; the app's `get_model` calls `wait(...)`
first, so a session that arrives while the model is loading waits for that load instead of
starting a second one. Errors are left for the session to report (it loads again and shows them).
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_jobs: dict[tuple[str, str, str], list[threading.Thread]] = {}


def _load(spec: str, device: str, dtype: str) -> None:
    try:
        from probes.model.loading import load_model

        load_model(spec, device=device, dtype=dtype)
    except Exception:  # noqa: BLE001 - the session repeats the load and shows the error
        return


def _corpus() -> None:
    try:
        from probes.corpus import documents

        documents("prose")  # the natural-text regime samples from it; parsing takes seconds
        import probes.sinks  # noqa: F401 - imported here so the default page (Attention sinks) finds it loaded
        from app.ui.downloads import static_export_available

        static_export_available()  # imports kaleido (a fifth of a second) before the first figure asks
    except Exception:  # noqa: BLE001 - best effort; the page does the same work if this failed
        return


def start(spec: str, device: str, dtype: str) -> None:
    """Load (spec, device, dtype) and parse the prose corpus in two background threads, once."""
    key = (spec, device, dtype)
    with _lock:
        if key in _jobs:
            return
        threads = [threading.Thread(target=_load, args=key, name=f"prewarm-{spec}", daemon=True),
                   threading.Thread(target=_corpus, name="prewarm-corpus", daemon=True)]
        _jobs[key] = threads
        for thread in threads:
            thread.start()


def wait(spec: str, device: str, dtype: str) -> None:
    """Block until a prewarm of the same model (if any) has finished (the corpus too: functools.cache
    does not lock, so a page sampling it meanwhile would parse it a second time)."""
    with _lock:
        threads = list(_jobs.get((spec, device, dtype), []))
    for thread in threads:
        thread.join()
