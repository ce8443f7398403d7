"""gridverse UI: `streamlit run ui/app.py [-- --config PATH]` (the demo starts it for you, with the
`--config` it was given)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout as a script

if "--config" in sys.argv[1:-1]:  # the pages load GRIDVERSE_CONFIG (ui/data.py: load_settings())
    os.environ["GRIDVERSE_CONFIG"] = str(Path(sys.argv[sys.argv.index("--config", 1) + 1]).resolve())

from ui.views import PAGES

st.set_page_config(page_title="gridverse", layout="wide")
pages = [st.Page(p.render, title=p.title, icon=p.icon, url_path=p.url_path) for p in PAGES]
sections: dict[str, list] = {}
for spec, page in zip(PAGES, pages, strict=True):
    sections.setdefault(spec.section, []).append(page)
# Streamlit serves its default page only at the root URL (`/overview` would be "Page not found"),
# so the default is a hidden page that opens the first one at its own URL.
root = st.Page(
    lambda: st.switch_page(pages[0]), title=PAGES[0].title, url_path="start", default=True, visibility="hidden"
)
sections.setdefault(PAGES[0].section, []).insert(0, root)
st.navigation(sections).run()
