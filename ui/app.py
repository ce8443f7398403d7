"""gridverse UI: `streamlit run ui/app.py [-- --config PATH]` (the demo starts it for you, with the
`--config` it was given). Nobody sees a page before signing in; a signed-in user is offered only
the pages their role permits (`ui/views/PAGES`, `ui/signin.py`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout as a script

if "--config" in sys.argv[1:-1]:  # the pages load GRIDVERSE_CONFIG (ui/data.py: load_settings())
    os.environ["GRIDVERSE_CONFIG"] = str(Path(sys.argv[sys.argv.index("--config", 1) + 1]).resolve())

from ui import signin
from ui.views import PAGES

st.set_page_config(page_title="gridverse", layout="wide")
signin.guard_fragments()  # a live panel's own reruns check the session too
user = signin.current_user()
if user is None:
    # Signed out: every URL (a page's too) shows the sign-in form; after signing in, the same URL
    # opens its page, so a deep link survives the sign-in.
    form = st.Page(signin.sign_in_page, title="Sign in", url_path="signin", default=True)
    at_pages = [
        st.Page(signin.sign_in_page, title="Sign in", url_path=p.url_path, visibility="hidden")
        for p in PAGES
        if p.url_path != "signin"
    ]
    st.navigation([form, *at_pages], position="hidden").run()
else:
    signin.sidebar(user)
    permitted = [p for p in PAGES if user.can(p.permission)]
    sections: dict[str, list] = {}
    for spec in permitted:
        page = st.Page(spec.render, title=spec.title, icon=spec.icon, url_path=spec.url_path)
        sections.setdefault(spec.section, []).append(page)
    if not permitted:
        role = user.role.value

        def nothing() -> None:
            st.title("Nothing to show")
            st.info(f"The role {role} has no page in this console; sign out in the sidebar.")

        sections[""] = [st.Page(nothing, title="Nothing to show", url_path="nothing")]
    # Streamlit serves its default page only at the root URL (`/overview` would be "Page not found"),
    # so the default is a hidden page that opens the first one at its own URL; the sign-in URL does
    # the same once signed in.
    first = next(iter(sections.values()))[0]
    for url_path, default in (("start", True), ("signin", False)):
        redirect = st.Page(
            lambda: st.switch_page(first), title=first.title, url_path=url_path, default=default, visibility="hidden"
        )
        next(iter(sections.values())).insert(0, redirect)
    st.navigation(sections).run()
