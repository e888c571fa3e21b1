"""The loaded model and the sidebar's input, cached across reruns and sessions.

Models: st.cache_resource keyed by (spec, device, dtype); probes.load_model also caches per
process, so the app and tests in the same process share one copy. Inputs: st.cache_data keyed by
plain values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from app.ui.errors import shown_errors
from app.ui.sidebar import Settings
from probes.model.hooked_model import HookedModel


@st.cache_resource(show_spinner=False, max_entries=3)
def get_model(spec: str, device: str, dtype: str) -> HookedModel:
    """Load a model once per (spec, device, dtype) for every session of this server."""
    from app.ui import prewarm
    from probes.model.loading import load_model

    prewarm.wait(spec, device, dtype)
    return load_model(spec, device=device, dtype=dtype)


def current_model(settings: Settings) -> HookedModel:
    """The sidebar's model, with a spinner while it loads; a bad spec shows st.error and stops the page."""
    with shown_errors(), st.spinner(f"Loading {settings.spec or '(empty spec)'} on {settings.device} ..."):
        return get_model(settings.spec, settings.device, settings.dtype)


@dataclass(frozen=True)
class InputRows:
    """Token ids of the sidebar's input, one row per sequence, with a label for each."""

    rows: tuple[tuple[int, ...], ...]
    labels: tuple[str, ...]
    prepend_bos: bool


@st.cache_data(show_spinner=False, max_entries=16)
def _corpus_rows(spec: str, device: str, dtype: str, domain: str, n: int, length: int, seed: int) -> InputRows:
    from probes.corpus import sample

    model = get_model(spec, device, dtype)
    prefix = [model.facts.bos_token_id] if model.facts.prepends_bos and model.facts.bos_token_id is not None else []
    drawn = sample(domain, n, length, model, seed=seed, prefix_ids=prefix)
    labels = tuple(f"{i}: {src}" for i, src in enumerate(drawn.sources))
    return InputRows(tuple(tuple(int(t) for t in r) for r in drawn.ids.tolist()), labels, bool(prefix))


def input_rows(model: HookedModel, settings: Settings) -> InputRows:
    """The sidebar's prompt (one row) or corpus sample (n rows) as token ids; bad input shows st.error."""
    with shown_errors():
        if settings.source == "prompt":
            tokens = model.to_tokens(settings.prompt)
            return InputRows((tuple(int(t) for t in tokens.ids[0].tolist()),), ("prompt",), tokens.prepend_bos)
        return _corpus_rows(settings.spec, settings.device, settings.dtype, settings.domain, settings.n,
                            settings.length, settings.seed)


@st.cache_data(show_spinner=False, max_entries=64)
def head_patterns(spec: str, device: str, dtype: str, row: tuple[int, ...], prepend_bos: bool,
                  layer: int) -> tuple[np.ndarray, list[str]]:
    """All heads' attention patterns of one layer on one sequence (probes.model.capture):
    ([head, query, key] as numpy, the token strings)."""
    from probes.model.capture import capture

    model = get_model(spec, device, dtype)
    tokens = model.tokens_from_ids([list(row)], prepend_bos=prepend_bos)
    res = capture(model, tokens, what=["pattern"], layers=[layer])
    return res["pattern"][0, 0].numpy(), tokens.str_tokens[0]
