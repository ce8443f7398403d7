"""The UI's pages, in one list: `ui/app.py` builds its navigation from `PAGES`.

Adding a page is adding a module here with a `page()` function and one `PageSpec` line below,
with the permission a user needs to see it (`permission=Permission.…`, required: deny by
default). The page also calls `ui.signin.require(...)` at its top and in each action handler.
Every page has an explicit URL path (`/overview`, `/twin`, `/substation`); the app's root URL
opens the first page the signed-in user may see."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from gridverse.auth.roles import Permission


@dataclass(frozen=True)
class PageSpec:
    """One page: its title and icon in the navigation, the function that draws it, its URL path,
    the navigation section (the kind of user it is for) and the permission that lists it."""

    title: str
    icon: str
    module: str  # e.g. "ui.views.overview"
    url_path: str  # served at /<url_path>
    section: str  # "Operators", "Field technicians", "Analysts", "Security"
    function: str = "page"
    permission: Permission = field(kw_only=True)

    def render(self) -> None:
        """Draw the page (imports its module on first use)."""
        getattr(importlib.import_module(self.module), self.function)()


P = Permission
PAGES: tuple[PageSpec, ...] = (
    PageSpec("Panoramic view", ":material/hub:", "ui.views.overview", "overview", "Operators", permission=P.GRID_VIEW),
    PageSpec("Grid twin", ":material/monitoring:", "ui.views.twin", "twin", "Operators", permission=P.GRID_VIEW),
    PageSpec(
        "Substation",
        ":material/factory:",
        "ui.views.substation",
        "substation",
        "Field technicians",
        permission=P.INSPECT_VIEW,
    ),
    PageSpec("Alarms", ":material/notifications:", "ui.views.alarms", "alarms", "Operators", permission=P.GRID_VIEW),
    PageSpec(
        "My routes", ":material/route:", "ui.views.routes", "routes", "Field technicians", permission=P.INSPECT_VIEW
    ),
    PageSpec("Anomaly lab", ":material/science:", "ui.views.analyst", "lab", "Analysts", permission=P.ANOMALY_VIEW),
    PageSpec("Audit record", ":material/policy:", "ui.views.audit", "audit", "Security", permission=P.AUDIT_VIEW),
    PageSpec("Users", ":material/group:", "ui.views.users", "users", "Security", permission=P.USERS_MANAGE),
)
