"""The UI's pages, in one list: `ui/app.py` builds its navigation from `PAGES`.

Adding a page is adding a module here with a `page()` function and one `PageSpec` line below.
Every page has an explicit URL path (`/overview`, `/twin`, `/substation`); the app's root URL
opens the first page."""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class PageSpec:
    """One page: its title and icon in the navigation, the function that draws it, its URL path
    and the navigation section (the kind of user it is for)."""

    title: str
    icon: str
    module: str  # e.g. "ui.views.overview"
    url_path: str  # served at /<url_path>
    section: str
    function: str = "page"

    def render(self) -> None:
        """Draw the page (imports its module on first use)."""
        getattr(importlib.import_module(self.module), self.function)()


PAGES: tuple[PageSpec, ...] = (
    PageSpec("Panoramic view", ":material/hub:", "ui.views.overview", "overview", "Operators"),
    PageSpec("Grid twin", ":material/monitoring:", "ui.views.twin", "twin", "Operators"),
    PageSpec("Substation", ":material/factory:", "ui.views.substation", "substation", "Field technicians"),
)
