"""Field technicians' view: the rendered substation, equipment coloured by its state."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from gridverse.schema import LOADING_ALARM_PERCENT, LOADING_WARNING_PERCENT
from ui import data

CAPTION = (
    f"{{name}}: green normal, amber loaded ≥ {LOADING_WARNING_PERCENT:.0f} %, "
    f"red alarm or loaded ≥ {LOADING_ALARM_PERCENT:.0f} %, grey open, violet no data"
)


def page() -> None:
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
            st.image(str(image), caption=CAPTION.format(name=name))
        else:
            st.info(f"No render yet at {image}: the demo renders every {inspection.every_s:.0f} s.")
        assets = settings.assets.get(name, [])
        st.dataframe(
            [{"asset": a.name, "kind": a.kind.value, "device": a.device or ""} for a in assets], hide_index=True
        )

    live()
