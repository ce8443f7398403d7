"""gridverse UI: `streamlit run ui/app.py` (the demo starts it for you)."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout as a script

from ui.views import overview, substation, twin

st.set_page_config(page_title="gridverse", layout="wide")
navigation = st.navigation(
    {
        "Operators": [
            st.Page(overview.page, title="Panoramic view", url_path="overview", default=True),
            st.Page(twin.page, title="Grid twin", url_path="twin"),
        ],
        "Field technicians": [st.Page(substation.page, title="Substation", url_path="substation")],
    }
)
navigation.run()
