"""Peer detector: a meter against the meters that physically measure the same thing, for the slow
lies (bias, drift) that one point's own history hides inside its day-to-day spread.

Two kinds of peers need nothing but `points.csv`:

- **voltages**: every bus voltage of a grid moves with the upstream voltage (the MV network, the
  transformer's tap) by nearly the same amount; what one bus does that the median of the others
  does not is either local load or a lying meter;
- **the two sides of a transformer**: active and reactive power in at HV are out at LV plus the
  transformer's losses (a few per cent), so a deviation on one side the other does not mirror is
  a meter's, not the grid's;
- **P, Q and I at one line end**: I = S / (√3 U), S = √(P² + Q²), with U the end's voltage, which
  moves by a few per cent; the current a meter reports is compared with k·S, k the ratio I / S
  over the preceding days, and a bias or drift of any of the three shows on the current point
  (the same element as the faulty meter, which is what an operator needs to send someone to).

Each point's deviation from its daily profile (the same time on earlier days, as in
`anomaly.features`) is compared with its peers' deviation; the residual is scaled by its own
robust spread over the preceding days (at least the meter's σ) and smoothed by a median over
`sustain` samples (a bias lasts; a one-sample spike is the temporal detector's). Causal,
vectorised, tied to no grid's columns: peers come from each point's quantity, element and side.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from anomaly.features import _nanmedian_last, _rolling_median, _shift, samples_per_day

#: below this a bus voltage is a de-energised bus, not a reading to compare
DEAD_BUS_PU = 0.5
#: up to this many voltage points each is compared with the median of the others; above it with
#: the median of all (the same within one rank, and one sort instead of one per point)
LEAVE_ONE_OUT_MAX = 24


def _peer_deviation(dev: np.ndarray, points: pd.DataFrame, cols: list[str]) -> np.ndarray:
    """(time, point) the deviation the point's peers expect of it; NaN where it has none."""
    n_t, n_p = dev.shape
    out = np.full((n_t, n_p), np.nan)
    pts = points.loc[cols]
    volt = np.flatnonzero(pts.quantity.to_numpy() == "v_pu")
    if len(volt) > LEAVE_ONE_OUT_MAX:  # one point moves the median of many by a rank at most: one sort
        med, valid = _nanmedian_last(dev[:, volt])
        out[:, volt] = np.where(valid >= 3, med, np.nan)[:, None]
    elif len(volt) >= 3:  # a median of at least two others
        for k in volt:
            others = dev[:, volt[volt != k]]
            med, valid = _nanmedian_last(others)
            out[:, k] = np.where(valid >= 2, med, np.nan)
    trafo = pts[(pts.element_type == "trafo") & pts.quantity.isin(["p_mw", "q_mvar"])]
    position = {name: i for i, name in enumerate(cols)}
    for (_element, _quantity), group in trafo.groupby(["element", "quantity"]):
        sides = dict(zip(group.side.astype(str), group.index, strict=True))
        if "hv" in sides and "lv" in sides:
            hv, lv = position[sides["hv"]], position[sides["lv"]]
            out[:, hv] = -dev[:, lv]  # power in at HV is power out at LV
            out[:, lv] = -dev[:, hv]
    return out


def _current_residual(
    measured: np.ndarray, points: pd.DataFrame, cols: list[str], day: int, scale_days: int
) -> np.ndarray:
    """(time, point) at each line end's current point: I − k·S (module doc); NaN elsewhere."""
    n_t, n_p = measured.shape
    out = np.full((n_t, n_p), np.nan)
    pts = points.loc[cols]
    lines = pts[pts.element_type == "line"]
    position = {name: i for i, name in enumerate(cols)}
    slow = max(day // 8, 1)
    for (_element, _side), group in lines.groupby(["element", lines.side.astype(str)]):
        by = dict(zip(group.quantity, group.index, strict=False))
        if not {"p_mw", "q_mvar", "i_ka"} <= set(by):
            continue
        i = measured[:, position[by["i_ka"]]]
        apparent = np.hypot(measured[:, position[by["p_mw"]]], measured[:, position[by["q_mvar"]]])
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(apparent > 0, i / apparent, np.nan)
        k = _rolling_median(_shift(ratio[:, None], 1), scale_days * day, min_periods=day, step=slow)[:, 0]
        out[:, position[by["i_ka"]]] = i - k * apparent
    return out


def peer_kinds(points: pd.DataFrame, cols: list[str]) -> np.ndarray:
    """Per point, which comparison `peer_scores` makes of it: "voltage", "trafo", "current" or ""
    (none); each kind has its own spread of clean residuals, so its own threshold."""
    pts = points.loc[cols]
    kind = np.full(len(cols), "", dtype=object)
    kind[(pts.quantity == "v_pu").to_numpy()] = "voltage"
    kind[((pts.element_type == "trafo") & pts.quantity.isin(["p_mw", "q_mvar"])).to_numpy()] = "trafo"
    kind[((pts.element_type == "line") & (pts.quantity == "i_ka")).to_numpy()] = "current"
    return kind


def peer_scores(
    telemetry: pd.DataFrame,
    points: pd.DataFrame,
    *,
    history_days: int = 7,
    min_days: int = 3,
    scale_days: int = 3,
    sustain: int = 4,
) -> np.ndarray:
    """(time, point) signed robust z of each point's deviation beyond its peers' (0 where the
    point has no peers or no profile yet)."""
    cols = list(telemetry.columns)
    raw = telemetry.to_numpy(dtype=float)
    n_t, n_p = raw.shape
    if n_t == 0 or n_p == 0:
        return np.zeros((n_t, n_p))
    day = samples_per_day(pd.DatetimeIndex(telemetry.index))
    sigma = points.loc[cols, "sigma"].to_numpy(dtype=float)
    typical = np.nanmedian(np.abs(raw), axis=0)
    measured = np.where((raw == 0.0) & (typical > 10 * sigma)[None, :], np.nan, raw)  # zero fill: no reading
    # a de-energised bus (an outage upstream) reads noise around zero: that is the outage, which
    # the temporal detector names, not a voltage its peers can be compared with
    volt = (points.loc[cols, "quantity"] == "v_pu").to_numpy()
    measured[:, volt] = np.where(measured[:, volt] < DEAD_BUS_PU, np.nan, measured[:, volt])
    shifted = np.stack([_shift(measured, d * day) for d in range(1, history_days + 1)], axis=-1)
    profile, days_seen = _nanmedian_last(shifted)
    dev = np.where(days_seen >= min_days, measured - profile, np.nan)
    resid = dev - _peer_deviation(dev, points, cols)
    triple = _current_residual(measured, points, cols, day, scale_days)
    has = ~np.isnan(triple)
    resid = np.where(has, triple, resid)
    slow = max(day // 8, 1)
    spread = 1.4826 * _rolling_median(np.abs(_shift(resid, 1)), scale_days * day, min_periods=day // 2, step=slow)
    scale = np.fmax(np.nan_to_num(spread, nan=np.inf), np.sqrt(2.0) * sigma[None, :])
    z = _rolling_median(resid / scale, sustain)
    return np.nan_to_num(z)
