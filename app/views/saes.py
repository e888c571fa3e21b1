"""SAE features page (spec: saes.md), built on saes/ and app/figures/saes.py.

Pick an SAE: train a small one here (activations at blocks.L.hook_resid_post of a corpus sample,
saes.activation_store.collect_activations, trained by saes.pipeline.train_sae, the CLI's pipeline, with one
app.ui.progress.StreamlitReporter over both), or load one (saes.sources.load_sae: a SAELens-format folder, a
Gemma Scope params.npz or hf://,
checked against the model). Then: the density histogram, one feature's dashboard (top contexts,
activation histogram, logit effects; saes.dashboard.feature_dashboards) and the prompt view (the most
active features at each token; saes.dashboard.prompt_features). Nothing runs before a button press.

Inputs: training and the evaluation windows read prose corpus windows (the page says so: an SAE
needs thousands of tokens); the prompt view reads the sidebar input. The training tokens are checked
against the memory budget; the prompt heatmap draws at most TOKEN_FIGURE_MAX tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from app.figures import saes as figs
from app.ui.downloads import json_download, plot, table
from app.ui.errors import shown_errors
from app.ui.inputs import TOKEN_FIGURE_MAX, check_budget, describe_input, sidebar_rows, token_window
from app.ui.model import current_model, get_model
from app.ui.progress import StreamlitReporter
from app.ui.sidebar import current_settings
from saes import activation_store as store
from saes import registry
from saes.pipeline import SAESpec, train_sae

EVAL_N, EVAL_T = 16, 64  # windows the dashboards and the density histogram read (prose, seed 1)


def train_here(model: Any, arch: str, layer: int, d_sae: int, k: int, n_tokens: int, batch: int, seed: int) -> Any:
    """A small SAE by saes.pipeline.train_sae (the CLI's pipeline) on `n_tokens` activations of prose windows
    (saes.activation_store.collect_activations, exactly `n_tokens` rows), the coefficient of standard / jumprelu
    fixed (no L0 target), about ten log and checkpoint chunks; one progress bar over both (app.ui.progress)."""
    hook = f"blocks.{layer}.hook_resid_post"
    steps = max(1, n_tokens // batch)
    chunk = max(1, steps // 10)
    spec = SAESpec(arch, d_sae, k, hook, model.facts.spec, seed, steer_l0=False)
    reporter = StreamlitReporter(f"Collecting {n_tokens} activations at {hook} ...")
    try:
        run = train_sae(lambda rep: store.collect_activations(model, hook, n_tokens, 65, seed, reporter=rep), spec,
                        batch_size=batch, total_tokens=steps * batch, reporter=reporter, gather_share=0.2,
                        warmup_steps=min(20, max(1, steps // 5)), dead_window_tokens=n_tokens, log_every=chunk,
                        checkpoint_every=chunk, progress=False)
    finally:
        reporter.close()
    return run.sae


def sae_label(sae: Any) -> str:
    c = sae.cfg
    return f"{c.architecture} SAE, {c.d_sae} features on {c.hook_name} (d_in {c.d_in})"


@st.cache_data(show_spinner=False, max_entries=32)
def eval_windows(spec: str, device: str, dtype: str) -> list[list[int]]:
    from probes.corpus import sample

    model = get_model(spec, device, dtype)
    return [[int(t) for t in row] for row in sample("prose", EVAL_N, EVAL_T, model, seed=1).ids.tolist()]


@st.cache_data(show_spinner=False, max_entries=32)
def density(spec: str, device: str, dtype: str, sae_key: str, _sae: Any) -> dict[str, Any]:
    """saes.evaluate.reconstruction_metrics on the evaluation windows (position 0 left out)."""
    import torch

    from saes.activation_store import hook_activations
    from saes.evaluate import reconstruction_metrics

    model = get_model(spec, device, dtype)
    ids = torch.tensor(eval_windows(spec, device, dtype))
    acts = hook_activations(model, _sae.cfg.hook_name, ids)[:, 1:].reshape(-1, _sae.cfg.d_in)
    return dict(reconstruction_metrics(_sae, acts).to_dict())


@st.cache_data(show_spinner=False, max_entries=64)
def dashboard(spec: str, device: str, dtype: str, sae_key: str, _sae: Any, feature: int) -> dict[str, Any]:
    """saes.dashboard.feature_dashboards for one feature over the evaluation windows."""
    import torch

    from saes.dashboard import feature_dashboards

    model = get_model(spec, device, dtype)
    ids = torch.tensor(eval_windows(spec, device, dtype))
    return dict(feature_dashboards(model, _sae, ids, [feature])["features"][str(feature)])


@st.cache_data(show_spinner=False, max_entries=64)
def prompt_view(spec: str, device: str, dtype: str, sae_key: str, _sae: Any, prompt: str, top: int) -> dict[str, Any]:
    """saes.dashboard.prompt_features: the `top` features at every token of one prompt."""
    from saes.dashboard import prompt_features

    return dict(prompt_features(get_model(spec, device, dtype), _sae, prompt, top=top))


def load_folder(model: Any, path: str, hook: str = "") -> Any:
    """saes.sources.load_sae: a folder (ours, SAELens), a Gemma Scope params.npz or hf://OWNER/REPO/PATH."""
    from probes.errors import InputError
    from saes.sources import load_sae

    if not path.strip():
        raise InputError("Type an SAE's path: a folder with cfg.json and sae_weights.safetensors, a Gemma Scope "
                         "params.npz, or hf://OWNER/REPO/PATH.")
    return load_sae(path.strip(), model, hook=hook.strip() or None)


def source_version(path: str) -> str:
    """What changes when the SAE at `path` is rewritten: the newest file time of a local folder or file, or the
    hub path itself (a revision pins it)."""
    local = Path(path.strip()).expanduser()
    if path.strip().startswith("hf://") or not local.exists():
        return path.strip()
    files = list(local.iterdir()) if local.is_dir() else [local]
    return str(max(p.stat().st_mtime for p in files))


settings = current_settings()
st.title("SAE features")
st.caption("Sparse autoencoders on the residual stream: train a small one here or load one (ours, SAELens, Gemma Scope, "
           "hf://), then read "
           "its features: where they fire, how often, and which tokens they push the logits towards.")
model = current_model(settings)
facts = model.facts

source = st.radio("SAE", ["train", "folder"], horizontal=True, key="sae_source",
                  format_func=lambda s: {"train": "Train a small one here", "folder": "Load one"}[s])
if source == "train":
    with st.form("sae_train"):
        c = st.columns(4)
        names = registry.sae_names()  # transcoders need two hooks: trained from Python for now
        arch = str(c[0].selectbox("Architecture", names, index=names.index("topk") if "topk" in names else 0,
                                  key="sae_arch"))
        layer = int(c[1].number_input("Layer (resid_post)", min_value=0, max_value=facts.n_layers - 1,
                                      value=min(6, facts.n_layers - 1), key="sae_layer"))
        d_sae = int(c[2].number_input("Features (d_sae)", min_value=8, max_value=65536, value=512, step=64,
                                      key="sae_d"))
        k = int(c[3].number_input("k (TopK family)", min_value=1, max_value=1024, value=16, key="sae_k"))
        c2 = st.columns(3)
        n_tokens = int(c2[0].number_input("Training tokens", min_value=256, max_value=1_000_000, value=8192, step=1024,
                                          key="sae_tokens"))
        batch = int(c2[1].number_input("Batch (tokens)", min_value=16, max_value=8192, value=256, step=64,
                                       key="sae_batch"))
        seed = int(c2[2].number_input("Seed", min_value=0, value=0, key="sae_seed"))
        go_train = st.form_submit_button("Train SAE", type="primary")
    st.caption("The default (8,192 prose tokens, 512 features) trains in well under a minute on CPU: a toy to "
               "explore the views, not a good SAE (`glasshouse sae train` for real runs).")
    st.caption("Training reads prose corpus windows (seed as set), not the sidebar input: an SAE needs thousands "
               "of tokens. The prompt view below reads the sidebar input.")
    if go_train:
        key = f"train:{facts.spec}:{arch}:{layer}:{d_sae}:{k}:{n_tokens}:{batch}:{seed}"
        with shown_errors():
            check_budget(model, max(1, n_tokens // 64), 65, 4 * n_tokens * (facts.d_model + 2 * d_sae),
                         what="SAE training")
            st.session_state["sae_loaded"] = (key, train_here(model, arch, layer, d_sae, k, n_tokens, batch, seed))
else:
    path_col, hook_col = st.columns([3, 2])
    path = path_col.text_input("SAE folder, Gemma Scope params.npz or hf://OWNER/REPO/PATH", value="", key="sae_path",
                         placeholder="runs/sae/topk/sae")
    hook = hook_col.text_input("Hook (Gemma Scope, when its path does not say)", value="", key="sae_hook",
                         placeholder="blocks.6.hook_resid_post")
    if st.button("Load SAE", type="primary", key="sae_load"):
        with shown_errors():
            sae = load_folder(model, path, hook)
            st.session_state["sae_loaded"] = (f"folder:{facts.spec}:{path.strip()}:{source_version(path)}", sae)

loaded = st.session_state.get("sae_loaded")
if loaded is None or not str(loaded[0]).split(":")[1] == facts.spec:
    st.info("Train or load an SAE to see its features.", icon=":material/grain:")
    st.stop()
sae_key, sae = loaded
st.subheader(sae_label(sae))
tag = f"{facts.spec}_{sae.cfg.architecture}_{sae.cfg.hook_name}_{sae.cfg.d_sae}"

with shown_errors(), st.spinner("Feature densities on the evaluation windows ..."):
    metrics = density(settings.spec, settings.device, settings.dtype, sae_key, sae)
m = st.columns(4)
m[0].metric("L0 (features per token)", f"{metrics['l0']:.1f}")
m[1].metric("FVU", f"{metrics['fvu']:.3f}", help="Fraction of variance unexplained on the evaluation windows.")
m[2].metric("Dead features", f"{metrics['dead']} / {metrics['d_sae']}")
m[3].metric("Evaluation tokens", metrics["n_tokens"])
plot(figs.density_histogram(metrics, f"Feature density on {metrics['n_tokens']} prose tokens"), f"sae_density_{tag}")
json_download(metrics, f"sae_metrics_{tag}", label="Metrics JSON")

st.header("Feature dashboard")
feature = int(st.number_input("Feature", min_value=0, max_value=sae.cfg.d_sae - 1, value=0, key="sae_feature"))
with shown_errors(), st.spinner(f"Dashboard of feature {feature} ..."):
    entry = dashboard(settings.spec, settings.device, settings.dtype, sae_key, sae, feature)
st.caption(f"Feature {feature}: fires on {entry['density']:.2%} of {EVAL_N} x {EVAL_T} prose tokens, "
           f"max activation {entry['max_activation']:.3f}. Nearest decoder directions: "
           + ", ".join(f"{n['feature']} (cos {n['cosine']:.2f})" for n in entry["neighbours"]))
if entry["top_examples"]:
    plot(figs.feature_top_tokens(entry), f"sae_top_contexts_{tag}_f{feature}")
    plot(figs.feature_activation_histogram(entry), f"sae_histogram_{tag}_f{feature}")
else:
    st.info(f"Feature {feature} never fires on the evaluation windows (dead there).")
plot(figs.logit_figure(entry), f"sae_logits_{tag}_f{feature}")
table(pd.DataFrame([{"direction": d, **r} for d in ("top", "bottom") for r in entry["logit_effects"][d]]),
      f"sae_logits_{tag}_f{feature}")
json_download(entry, f"sae_feature_{tag}_f{feature}", label="Dashboard JSON")

st.header("Prompt view")
given = sidebar_rows(model, settings)
seq = 0
if len(given.rows) > 1:
    seq = int(st.selectbox("Sequence", range(len(given.rows)), format_func=lambda i: given.labels[i], key="sae_seq"))
prompt = settings.prompt if settings.source == "prompt" else model.to_string(
    list(given.rows[seq][int(given.prepend_bos):]))
st.caption(f"Input: {describe_input(settings, given)}" + ("" if settings.source == "prompt" else
           f", sequence {seq} decoded to text and tokenized again") + "; change it in the sidebar.")
top = int(st.number_input("Top features per token", min_value=1, max_value=20, value=3, key="sae_top"))
with shown_errors(), st.spinner(f"Encoding the {len(given.rows[seq])} tokens with the SAE ..."):
    view = prompt_view(settings.spec, settings.device, settings.dtype, sae_key, sae, prompt, top)
start, stop = token_window(len(view["tokens"]), TOKEN_FIGURE_MAX, key="sae_prompt_start")
plot(figs.prompt_figure(view, start, stop), f"sae_prompt_{tag}")
table(pd.DataFrame([{"position": t["position"], "token": t["token"], "rank": r + 1, "feature": f["feature"],
                     "activation": f["activation"]} for t in view["tokens"] for r, f in enumerate(t["features"])],
                   columns=["position", "token", "rank", "feature", "activation"]), f"sae_prompt_{tag}")
