"""The sidebar every page shares: model spec, device, dtype, and the input (a prompt or a corpus sample).

Widgets live in the entry script (app/streamlit_app.py), so their values survive page changes.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

import streamlit as st
import torch

from probes.corpus import DOMAINS
from probes.model.model_specs import DEFAULT_MODEL, EMBEDDED

DTYPES = ("float32", "bfloat16", "float16")
DEFAULT_PROMPT = "The days of the week are Monday, Tuesday, Wednesday,"


@dataclass(frozen=True)
class Settings:
    """What the sidebar chose; hashable, so it can key caches."""

    spec: str
    device: str
    dtype: str
    source: str  # "prompt" or "corpus"
    prompt: str
    domain: str
    n: int
    length: int
    seed: int


@dataclass(frozen=True)
class Defaults:
    spec: str = DEFAULT_MODEL
    device: str | None = None
    dtype: str = "float32"


def parse_defaults(argv: Sequence[str]) -> Defaults:
    """Defaults passed after `--` by `glasshouse app` (--model, --device, --dtype); unknown args are ignored."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default="float32")
    known, _ = parser.parse_known_args(list(argv))
    return Defaults(spec=known.model, device=known.device, dtype=known.dtype)


def devices() -> list[str]:
    found = ["cpu"]
    if torch.cuda.is_available():
        found.insert(0, "cuda")
    return found


def render_sidebar(defaults: Defaults) -> Settings:
    """Draw the shared sidebar and return the settings it holds."""
    sb = st.sidebar
    sb.header("Model")
    spec = sb.text_input(
        "Model spec", value=defaults.spec, key="model_spec",
        help=f"An embedded model ({', '.join(EMBEDDED)}), a hub name (gpt2, EleutherAI/pythia-70m; needs network "
             "or the hub cache) or a local model folder.",
    ).strip()
    options = devices()
    device_index = options.index(defaults.device) if defaults.device in options else 0
    device = sb.selectbox("Device", options, index=device_index, key="device")
    dtype_index = DTYPES.index(defaults.dtype) if defaults.dtype in DTYPES else 0
    dtype = sb.selectbox("Dtype", DTYPES, index=dtype_index, key="dtype",
                         help="float32 is exact; half precision saves memory on a GPU.")
    sb.header("Input")
    source = sb.radio("Text", ["prompt", "corpus"], key="source", horizontal=True,
                      format_func=lambda s: {"prompt": "Prompt", "corpus": "Corpus sample"}[s])
    prompt, domain, n, length, seed = DEFAULT_PROMPT, DOMAINS[0], 4, 64, 0
    if source == "prompt":
        prompt = sb.text_area("Prompt", value=DEFAULT_PROMPT, key="prompt", height=100,
                              help="Read by the Model, Attention sinks, Extreme tokens, Active/dormant and SAE pages "
                                   "(each says which input it uses). At most 1,024 tokens, or the model's context "
                                   "if shorter.")
        _flag_prompt(prompt)
    else:
        domain = sb.selectbox("Domain", DOMAINS, key="domain",
                              help="prose: Python's documentation and docstrings; code: the standard library.")
        n = int(sb.number_input("Sequences", min_value=1, max_value=64, value=4, key="corpus_n"))
        length = int(sb.number_input("Tokens each", min_value=4, max_value=1024, value=64, step=16,
                                     key="corpus_len"))
        seed = int(sb.number_input("Seed", min_value=0, value=0, key="corpus_seed"))
    return Settings(spec=spec, device=str(device), dtype=str(dtype), source=str(source), prompt=prompt,
                    domain=str(domain), n=n, length=length, seed=seed)


def _flag_prompt(prompt: str) -> None:
    """Show under the prompt box, on every page, what the pages will refuse (checks needing no model)."""
    from app.ui.errors import human_message
    from app.ui.inputs import check_prompt_text
    from probes.errors import InputError

    try:
        check_prompt_text(prompt)
    except InputError as exc:
        st.sidebar.error(human_message(str(exc)), icon=":material/error:")


def current_settings() -> Settings:
    """The settings the entry script stored for this run (pages call this)."""
    settings = st.session_state.get("_settings")
    if not isinstance(settings, Settings):
        st.error("Start the app from app/streamlit_app.py (glasshouse app); pages do not run alone.")
        st.stop()
    return settings
