"""Compare models page (docs/atlas.md): the atlas report of two models side by side, read from a saved
atlas folder or computed here with the small budget (app.atlas.run_atlas, progress through
app.ui.progress.StreamlitReporter). The table and figures come from summary.json alone
(app/figures/atlas.py), the same as report.html's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from app.atlas_folders import ATLAS_ROOT, default_folder
from app.ui.downloads import json_download, plot, table
from app.ui.errors import shown_errors
from app.ui.sidebar import current_settings

DEFAULT_MODELS = ("smollm2-135m", "gemma3-270m")


def saved_folders(root: Path) -> list[str]:
    """Atlas folders (holding summary.json) under root, and root itself if it is one."""
    if not root.is_dir():
        return []
    found = [root] if (root / "summary.json").is_file() else []
    found += sorted(p.parent for p in root.glob("*/summary.json"))
    return [str(p) for p in found]


def show_report(summary: dict[str, Any], folder: str) -> None:
    """The headline table and each analysis's figure, with its settings and notes."""
    from app.atlas.run import figures_of

    a = summary["atlas"]
    c = a["corpus"]
    st.caption(f"Budget {a['budget']}: {c['n']} {c['domain']} windows of {c['length']} tokens, seed {a['seed']}, "
               f"dtype {a['dtype']}; folder {folder}.")
    st.subheader("Headline numbers")
    df = pd.DataFrame(summary["table"], columns=["analysis", "number", *a["models"]])
    table(df.astype({m: str for m in a["models"]}), f"atlas_headlines_{'_vs_'.join(a['models'])}")
    json_download(summary, "atlas_summary", label="summary.json")
    figures = figures_of(summary)
    for name, info in summary["analyses"].items():
        st.subheader(info["title"])
        settings = "; ".join(f"{p}: " + ", ".join(f"{k}={v}" for k, v in s.items())
                             for p, s in info["settings"].items())
        st.caption(f"settings: {settings}" + (f" — {info['notes']}" if info.get("notes") else ""))
        if info.get("missing_models"):
            st.warning(f"Not finished for {', '.join(info['missing_models'])}.")
        if name in figures:
            plot(figures[name], f"atlas_{name}")


def pick_two(summary: dict[str, Any]) -> dict[str, Any]:
    from app.atlas.report import select_models

    models = summary["atlas"]["models"]
    if len(models) <= 2:
        return summary
    chosen = st.multiselect("Two models", models, default=models[:2], max_selections=2, key="cmp_models")
    if len(chosen) != 2:
        st.info("Pick two models to compare.")
        st.stop()
    with shown_errors():
        return select_models(summary, chosen)


def from_folder() -> tuple[dict[str, Any], str] | None:
    from app.atlas.report import read_summary

    folders = saved_folders(ATLAS_ROOT)
    options = [*folders, "another folder ..."]
    choice = st.selectbox("Atlas folder", options, key="cmp_folder",
                          help=f"Folders with a summary.json under {ATLAS_ROOT} (written by `glasshouse atlas`).")
    if choice == options[-1]:
        choice = st.text_input("Folder path", value="", key="cmp_path", placeholder="runs/atlas/smollm2-135m+gemma3-270m")
        if not choice.strip():
            st.info("Give the path of a folder written by `glasshouse atlas`.")
            return None
    with shown_errors():
        return read_summary(choice.strip()), choice.strip()


def compute_live() -> tuple[dict[str, Any], str] | None:
    from app.atlas import run_atlas
    from app.ui.progress import StreamlitReporter
    from probes.model.preflight import check_model_spec

    settings = current_settings()
    with st.form("cmp_live"):
        c = st.columns(2)
        a = c[0].text_input("Model A", value=DEFAULT_MODELS[0], key="cmp_a")
        b = c[1].text_input("Model B", value=DEFAULT_MODELS[1], key="cmp_b")
        st.caption(f"Small budget on {settings.device} ({settings.dtype}): every atlas analysis; the folder resumes, so "
                   "a second click reuses what is done. Both models on the 2-core CPU machine take a few minutes.")
        go = st.form_submit_button("Compute", type="primary")
    models = [a.strip(), b.strip()]
    folder = str(default_folder(models))
    if go:
        with shown_errors():
            for spec in models:
                check_model_spec(spec)
            reporter = StreamlitReporter("Atlas ...")
            run_atlas(models, folder, "small", device=settings.device, dtype=settings.dtype, progress=False,
                      reporter=reporter)
            reporter.close()
        st.session_state["cmp_done"] = folder
    if st.session_state.get("cmp_done") != folder:
        st.info("Press Compute to run the atlas on both models.")
        return None
    from app.atlas.report import read_summary

    with shown_errors():
        return read_summary(folder), folder


st.title("Compare models")
st.caption("The atlas of two models side by side: headline numbers and key figures of every analysis.")
source = st.radio("Source", ["Saved atlas folder", "Compute live (small budget)"], horizontal=True, key="cmp_source")
got = from_folder() if source.startswith("Saved") else compute_live()
if got is not None:
    summary, where = got
    show_report(pick_two(summary), where)
