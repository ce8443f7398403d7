"""The panoramic figure in a Streamlit component of its own (a v1 component with a stable key).

`st.plotly_chart` gives the chart a new identity whenever its figure changes, so every live
refresh remounted it and threw away the user's zoom and hover. This component's iframe stays;
each refresh hands it the new figure, which it applies with `Plotly.react` (zoom kept through
`uirevision`). A click on a bus or a line returns its customdata code."""

from __future__ import annotations

import functools
import hashlib
import logging
import shutil
import tempfile
from pathlib import Path

import plotly
import streamlit.components.v1 as components

from ui.panorama.figure import to_json

SOURCE = Path(__file__).resolve().parent / "component" / "index.html"
#: plotly.js's gl2d bundle (npm, installed by the bootstrap into the component's folder): scattergl
#: and the core, 1.6 MB against the full bundle's 4.8 MB, parsed in about half the time.
GL2D_BUNDLE = SOURCE.parent / "node_modules" / "plotly.js-gl2d-dist-min" / "plotly-gl2d.min.js"

log = logging.getLogger(__name__)


def plotly_bundle() -> Path:
    """The plotly.js the component loads: the gl2d bundle when the bootstrap installed it, else the
    full bundle the Python package ships (slower to parse; said once in the log)."""
    if GL2D_BUNDLE.is_file():
        return GL2D_BUNDLE
    log.warning(
        "panorama: %s is missing, using plotly's full bundle (the view draws slower); "
        "run `npm ci --prefix ui/panorama/component` (scripts/bootstrap does it)",
        GL2D_BUNDLE,
    )
    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


@functools.cache
def _component():
    """Declare the component once per process, from a directory holding its page and plotly.js
    (served from this machine: no network access needed)."""
    page = SOURCE.read_bytes()
    bundle = plotly_bundle()
    digest = hashlib.sha256(page + str(bundle).encode()).hexdigest()[:12]
    target = Path(tempfile.gettempdir()) / f"gridverse-panorama-{plotly.__version__}-{digest}"
    if not (target / "plotly.min.js").is_file():
        staging = Path(tempfile.mkdtemp(prefix="gridverse-panorama-"))
        (staging / "index.html").write_bytes(page)
        shutil.copyfile(bundle, staging / "plotly.min.js")
        try:
            staging.rename(target)
        except OSError:  # another process made it first
            shutil.rmtree(staging, ignore_errors=True)
    return components.declare_component("gridverse_panorama", path=str(target))


def panorama_chart(fig: dict, *, key: str, stamp: str = "") -> dict | None:
    """Draw `fig`; returns the last click ({"code": customdata, "click": n}) or None. `stamp`
    ends up in the plot's `data-drawn` attribute once drawn (browser tests and benches wait on it)."""
    return _component()(spec=to_json(fig), config={}, stamp=stamp, key=key, default=None)
