"""Field technicians' view: the rendered substation, equipment coloured by its state, with the
time the picture shows, and each equipment's live state, why, and its hot spot."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import streamlit as st

from gridverse.auth.roles import Permission
from gridverse.schema import LOADING_ALARM_PERCENT, LOADING_WARNING_PERCENT
from inspection.state import live_states, read_render_stamp
from ui import data
from ui.signin import require

CAPTION = (
    f"{{name}}: green normal, amber loaded ≥ {LOADING_WARNING_PERCENT:.0f} %, "
    f"red alarm or loaded ≥ {LOADING_ALARM_PERCENT:.0f} %, grey open, dark blue de-energised, violet no data"
)
LIVE_WINDOW_S = 60.0


def _rendered_at(image: Path) -> tuple[float, str]:
    """When the render was made (its stamp, else the file's time) and how that reads."""
    stamp = read_render_stamp(image)
    t = stamp["rendered_ns"] / 1e9 if stamp else image.stat().st_mtime
    when = datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return time.time() - t, when


def _states_table(name: str) -> pd.DataFrame:
    settings = data.settings()
    assets = settings.assets.get(name, [])
    try:
        since = time.time_ns() - int(LIVE_WINDOW_S * 1e9)
        live = live_states(settings.site, assets, data.historian(), name, since)
    except Exception as exc:  # the table still lists the equipment; the state says why it is unknown
        st.warning(f"Live states unavailable ({type(exc).__name__}: {exc}); shown as unknown.")
        live = {}
    rows = []
    for a in assets:
        e = live.get(a.name)
        hot = e.hot_spot_c if e is not None else None
        rows.append(
            {
                "asset": a.name,
                "kind": a.kind.value,
                "device": a.device or "",
                "state": e.state.value if e is not None else "unknown",
                "hot spot °C": round(hot, 1) if hot is not None else None,
                "ageing rate": round(e.ageing_rate, 2) if e is not None and e.ageing_rate is not None else None,
                "why": "; ".join(e.reasons) if e is not None else "",
            }
        )
    return pd.DataFrame(rows)


def page() -> None:
    require(Permission.INSPECT_VIEW)
    settings = data.settings()
    inspection = settings.inspection
    if inspection is None:  # a site without an inspection section renders nothing
        st.title("Substation")
        st.info("No substation is rendered: the configuration has no `inspection` section.")
        return
    name = inspection.substation
    st.title(f"Substation {name}")
    image = Path(inspection.output_dir) / f"{name}.png"

    @st.fragment(run_every=settings.ui.refresh_s)
    def live() -> None:
        if image.exists():
            age, when = _rendered_at(image)
            st.image(str(image), caption=CAPTION.format(name=name) + f" · rendered {when} ({age:.0f} s ago)")
            if age > 3 * inspection.every_s + 30:
                st.warning(
                    f"This picture is {age:.0f} s old (renders are due every {inspection.every_s:.0f} s): the "
                    "render process may be slow or stopped; the table below is live."
                )
        else:
            st.info(f"No render yet at {image}: the demo renders every {inspection.every_s:.0f} s.")
        st.dataframe(_states_table(name), hide_index=True)

    live()
