"""The panoramic figure: one WebGL (`Scattergl`) trace per class, whatever the size of the network.

Lines of a class are one trace with NaN gaps between segments; buses of a class one marker trace.
`uirevision` is constant per layout, so a live refresh keeps the user's zoom and pan. Every point
carries its array position in `customdata` so that a click can be traced back to its element."""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass

import numpy as np

from ui.panorama.classify import BranchClass, BusClass, Classified, LiveState, Quality, SwitchClass
from ui.panorama.layout import GridLayout, Layout

#: ISA-101: grey for normal and for "nothing to show", colour only for the abnormal.
BUS_STYLE: dict[str, tuple[str, str]] = {  # class → (colour, symbol when estimated)
    BusClass.DEENERGISED: ("#c4c7cc", "circle-open"),
    BusClass.NO_DATA: ("#80868b", "circle-open"),
    BusClass.NORMAL: ("#5f6368", "circle"),
    BusClass.LOW: ("#1967d2", "circle"),
    BusClass.HIGH: ("#c2185b", "circle"),
}
BRANCH_STYLE: dict[str, tuple[str, float, str]] = {  # class → (colour, width, dash)
    BranchClass.DEENERGISED: ("#c4c7cc", 1.0, "dot"),
    BranchClass.NO_DATA: ("#9aa0a6", 1.0, "dash"),
    BranchClass.NORMAL: ("#9aa0a6", 1.5, "solid"),
    BranchClass.NEAR: ("#e37400", 3.0, "solid"),
    BranchClass.OVER: ("#d93025", 4.0, "solid"),
}
SWITCH_STYLE: dict[str, tuple[str, str]] = {
    SwitchClass.OPEN_NORMAL: ("#5f6368", "square-open"),
    SwitchClass.OFF_NORMAL: ("#e37400", "square"),
}
ABNORMAL_BUSES = (BusClass.LOW, BusClass.HIGH)
QUALITY_SYMBOL = {Quality.MEASURED: "diamond", Quality.STALE: "x"}  # estimated and none: the class symbol
N1_COLOUR = "#e37400"
SELECTED = "selected"
HANDLES = "line details"
N1_BADGES = "N-1 critical"


@dataclass(frozen=True)
class Selection:
    """What the user clicked: ("bus" | "branch", array position)."""

    kind: str
    position: int


def _sizes(n_bus: int) -> tuple[float, float]:
    """Bus marker size and switch marker size for a network of n buses (smaller for large grids)."""
    size = float(np.clip(11.0 - 1.6 * math.log10(max(n_bus, 1)), 4.0, 9.0))
    return size, size + 2


def _segments(xy: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x and y of segments a→b as one polyline with NaN gaps (one trace draws them all)."""
    x = np.column_stack([xy[a, 0], xy[b, 0], np.full(len(a), np.nan)]).ravel()
    y = np.column_stack([xy[a, 1], xy[b, 1], np.full(len(a), np.nan)]).ravel()
    return x, y


def _fmt(v: float, spec: str, unit: str) -> str:
    return f"{v:{spec}} {unit}" if np.isfinite(v) else "no estimate"


def build_figure(
    layout: GridLayout,
    state: LiveState,
    classes: Classified,
    *,
    which: Layout,
    title: str,
    selection: Selection | None = None,
    loading_limit: float = 100.0,
) -> dict:
    """The whole network as one plotly JSON dict (numpy arrays kept for `to_json`); `layout` is reused."""
    xy = layout.xy(which)
    bus_size, switch_size = _sizes(len(layout.bus))
    traces: list[dict] = []

    for cls in BranchClass:
        sel = np.flatnonzero(classes.branch == cls.value)
        if not len(sel):
            continue
        colour, width, dash = BRANCH_STYLE[cls]
        x, y = _segments(xy, layout.branch_from[sel], layout.branch_to[sel])
        traces.append(
            _trace(
                x=x,
                y=y,
                mode="lines",
                name=f"line {cls.value} ({len(sel)})",
                legendgroup="branches",
                line={"color": colour, "width": width, "dash": dash},
                hoverinfo="skip",
            )
        )

    # line midpoints: what a hover or click on a line finds
    mid = (xy[layout.branch_from] + xy[layout.branch_to]) / 2
    load = state.loading_percent
    texts = [
        f"{kind} {idx} {name}<br>{_fmt(pct, '.0f', '%')} of rating · {cls}"
        for kind, idx, name, pct, cls in zip(
            layout.branch_kind, layout.branch_index, layout.branch_name, load, classes.branch, strict=True
        )
    ]
    traces.append(
        _trace(
            x=mid[:, 0],
            y=mid[:, 1],
            mode="markers",
            name=HANDLES,
            showlegend=False,
            marker={"size": max(bus_size - 3, 3), "color": "#9aa0a6", "opacity": 0.3, "symbol": "square"},
            text=texts,
            hovertemplate="%{text}<extra></extra>",
            customdata=-(np.arange(len(mid)) + 1),  # branches negative, buses non-negative
        )
    )

    if state.n1:
        pos = np.fromiter(state.n1.keys(), dtype=np.int64)
        traces.append(
            _trace(
                x=mid[pos, 0],
                y=mid[pos, 1],
                mode="markers",
                name=f"{N1_BADGES} ({len(pos)})",
                marker={
                    "size": switch_size + 3,
                    "color": N1_COLOUR,
                    "symbol": "triangle-up-open",
                    "line": {"width": 2},
                },
                text=[f"N-1: {layout.branch_kind[p]} {layout.branch_index[p]} out → {state.n1[int(p)]}" for p in pos],
                hovertemplate="%{text}<extra></extra>",
                customdata=-(pos + 1),
            )
        )

    for sw_cls in SwitchClass:
        sel = classes.switch_shown[classes.switch == sw_cls.value]
        if not len(sel):
            continue
        colour, symbol = SWITCH_STYLE[sw_cls]
        a, b = layout.switch_bus[sel], layout.switch_other_bus[sel]
        at = xy[a] * 0.75 + xy[b] * 0.25  # a quarter of the way from its bus, so the bus stays visible
        normal = layout.switch_normally_closed[sel]
        actual = state.switch_closed[sel]
        traces.append(
            _trace(
                x=at[:, 0],
                y=at[:, 1],
                mode="markers",
                name=f"switch {sw_cls.value} ({len(sel)})",
                marker={"size": switch_size, "color": colour, "symbol": symbol, "line": {"width": 1.5}},
                text=[
                    f"switch {i} {n}<br>now {'closed' if c else 'OPEN'}, normally {'closed' if nc else 'open'}"
                    for i, n, c, nc in zip(
                        layout.switch_index[sel], layout.switch_name[sel], actual, normal, strict=True
                    )
                ],
                hovertemplate="%{text}<extra></extra>",
            )
        )

    vm = state.vm_pu
    for bus_cls in BusClass:
        sel = np.flatnonzero(classes.bus == bus_cls.value)
        if not len(sel):
            continue
        colour, base_symbol = BUS_STYLE[bus_cls]
        quality = state.quality[sel]
        symbols = [
            QUALITY_SYMBOL.get(q, base_symbol) if bus_cls is not BusClass.DEENERGISED else base_symbol for q in quality
        ]
        traces.append(
            _trace(
                x=xy[sel, 0],
                y=xy[sel, 1],
                mode="markers",
                name=f"bus {bus_cls.value} ({len(sel)})",
                marker={
                    # the abnormal stand out by size too (on a 10,000-bus grid colour alone gets lost)
                    "size": max(bus_size * 1.8, 8.0) if bus_cls in ABNORMAL_BUSES else bus_size,
                    "color": colour,
                    "symbol": symbols,
                    "line": {"width": 1, "color": colour},
                },
                text=[
                    f"bus {b} {n}<br>{_fmt(v, '.4f', 'pu')} · {q}"
                    for b, n, v, q in zip(layout.bus[sel], layout.bus_name[sel], vm[sel], quality, strict=True)
                ],
                hovertemplate="%{text}<extra></extra>",
                customdata=sel,
            )
        )

    if selection is not None:
        if selection.kind == "bus":
            sx, sy = xy[selection.position]
        else:
            sx, sy = mid[selection.position]
        traces.append(
            _trace(
                x=[sx],
                y=[sy],
                mode="markers",
                name=SELECTED,
                showlegend=False,
                hoverinfo="skip",
                marker={"size": bus_size * 2.6, "color": "#202124", "symbol": "circle-open", "line": {"width": 2}},
            )
        )

    geo = which is Layout.GEOGRAPHIC and layout.geo is not None
    lat = float(np.nanmean(xy[:, 1])) if geo else 0.0
    fig_layout = {
        "title": {"text": title, "font": {"size": 13}, "x": 0, "xanchor": "left", "y": 0.99, "yanchor": "top"},
        "height": 640,
        "margin": {"l": 0, "r": 0, "t": 28, "b": 0},
        "uirevision": f"panorama-{which.value}",  # constant: live refreshes keep the user's zoom
        "legend": {"orientation": "h", "x": 0, "y": 0, "yanchor": "top", "font": {"size": 11}},  # clear of the title
        "xaxis": {"visible": False},
        "yaxis": {"visible": False, "scaleanchor": "x", "scaleratio": 1 / math.cos(math.radians(lat)) if geo else 1.0},
        "plot_bgcolor": "#ffffff",
        "paper_bgcolor": "#ffffff",
        "hovermode": "closest",
        "dragmode": "pan",
        "meta": {"loading_limit": loading_limit},
        "modebar": {"orientation": "v"},  # clear of the title with the data time
    }
    return {"data": traces, "layout": fig_layout}


def _trace(**kwargs: object) -> dict:
    return {"type": "scattergl", **kwargs}


def _encode(value: object) -> object:
    """numpy arrays as plotly.js typed arrays (base64, NaN kept as a gap); the rest as JSON has it."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            return {"dtype": "f4", "bdata": base64.b64encode(value.astype("<f4").tobytes()).decode()}
        if value.dtype.kind in "iu":
            return {"dtype": "i4", "bdata": base64.b64encode(value.astype("<i4").tobytes()).decode()}
        return value.tolist()
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def to_json(fig: dict) -> str:
    """The figure as the JSON plotly.js reads, without plotly.py's per-point validation (seconds on
    a 10,000-bus grid)."""
    return json.dumps(_encode(fig), separators=(",", ":"))


def selection_from_event(points: list[dict]) -> Selection | None:
    """The element a plotly selection event picked: the first point that carries a bus position
    (customdata ≥ 0) or a branch position (customdata -1 - position)."""
    for p in points:
        custom = p.get("customdata")
        if isinstance(custom, list):
            custom = custom[0] if custom else None
        if custom is None:
            continue
        code = int(custom)
        return Selection("bus", code) if code >= 0 else Selection("branch", -code - 1)
    return None
