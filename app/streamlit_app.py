"""The Glasshouse Streamlit app (docs/app.md): start it with `glasshouse app`.

Entry script: draws the shared sidebar, stores its settings for the pages, and runs the page
the user picked.
Icons are emoji: Streamlit fetches a Material favicon from fonts.gstatic.com, which fails offline.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:  # `streamlit run app/streamlit_app.py` from a checkout without an install
    sys.path.insert(0, str(_ROOT))

import streamlit as st  # noqa: E402

from app.ui.sidebar import parse_defaults, render_sidebar  # noqa: E402

# Not "pages": Streamlit serves a pages/ folder beside the entry script as scripts of their own until a session
# has called st.navigation, so a fresh server's first visitor of /dormant got the bare page script (and its
# "pages do not run alone" error) instead of the app.
PAGES = Path(__file__).resolve().parent / "views"


def main() -> None:
    st.set_page_config(page_title="Glasshouse", page_icon="🌿", layout="wide")
    model_page = st.Page(PAGES / "model.py", title="Model", icon="🧠")
    pages = {
        "Model": [model_page],
        "Analyses": [
            st.Page(PAGES / "sinks.py", title="Attention sinks", icon="⚓", default=True),
            st.Page(PAGES / "extreme.py", title="Extreme tokens", icon="⚡"),
            st.Page(PAGES / "dormant.py", title="Active/dormant heads", icon="💤"),
            st.Page(PAGES / "successor.py", title="Successor heads", icon="➡️"),
            st.Page(PAGES / "circuits.py", title="Circuits", icon="🕸️"),
            st.Page(PAGES / "saes.py", title="SAE features", icon="🧩"),
            st.Page(PAGES / "bblab.py", title="BB lab", icon="🧪"),
            st.Page(PAGES / "declared.py", title="Declared analyses", icon="📋"),
        ],
        "Atlas": [st.Page(PAGES / "compare.py", title="Compare models", icon="⚖️")],
    }
    nav = st.navigation(pages)
    st.session_state["_settings"] = render_sidebar(parse_defaults(sys.argv[1:]))
    st.sidebar.caption("Glasshouse · a mechanistic-interpretability workbench")
    nav.run()


main()
