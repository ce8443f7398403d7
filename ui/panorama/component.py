"""The panoramic figure in a Streamlit component of its own (a v1 component with a stable key).

`st.plotly_chart` gives the chart a new identity whenever its figure changes, so every live
refresh remounted it and threw away the user's zoom and hover. This component's iframe stays;
each refresh hands it the new figure, which it applies with `Plotly.react` (zoom kept through
`uirevision`). A click on a bus or a line returns its customdata code."""

from __future__ import annotations

import functools
import hashlib
import shutil
import tempfile
from pathlib import Path

import plotly
import streamlit.components.v1 as components

from ui.panorama.figure import to_json

SOURCE = Path(__file__).resolve().parent / "component" / "index.html"


@functools.cache
def _component():
    """Declare the component once per process, from a directory holding its page and plotly.js
    (the copy of plotly.js the Python package ships: no network access needed)."""
    page = SOURCE.read_bytes()
    digest = hashlib.sha256(page).hexdigest()[:12]
    target = Path(tempfile.gettempdir()) / f"gridverse-panorama-{plotly.__version__}-{digest}"
    if not (target / "plotly.min.js").is_file():
        staging = Path(tempfile.mkdtemp(prefix="gridverse-panorama-"))
        (staging / "index.html").write_bytes(page)
        shutil.copyfile(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", staging / "plotly.min.js")
        try:
            staging.rename(target)
        except OSError:  # another process made it first
            shutil.rmtree(staging, ignore_errors=True)
    return components.declare_component("gridverse_panorama", path=str(target))


def panorama_chart(fig: dict, *, key: str, stamp: str = "") -> dict | None:
    """Draw `fig`; returns the last click ({"code": customdata, "click": n}) or None. `stamp`
    ends up in the plot's `data-drawn` attribute once drawn (browser tests and benches wait on it)."""
    return _component()(spec=to_json(fig), config={}, stamp=stamp, key=key, default=None)
