"""Feeder detector: each metered feeder head's net load against its daily profile, with the share
every feeder's PV fleet explains taken out, for the grid events one meter alone does not show.

A PV inverter trip and an energy theft both raise a feeder's net load: the tripped unit stops
offsetting the load, the bypassed meter lets a load draw more than anyone bills. Neither has a
meter of its own in a realistic plan (small PV units and customer loads are not telemetered), and
on one feeder-head point both hide inside the day-to-day spread, which at midday is mostly
weather: a cloudy day lowers every PV unit at once. The operator's model (`network.json`) says how
much PV each feeder carries, so the weather can be read from the *other* feeders:

    d_f(t) = P_f(t) − profile_f(t)                     (deviation from the same time on earlier days)
    c(t)   = Σ_g d_g(t) / Σ_g PV_g over g ≠ f             (the fleet's shortfall per MW installed)
    r_f(t) = d_f(t) − c(t) · PV_f                      (what the fleet's weather does not explain)

A cloud moves every feeder in proportion to its PV, so r stays small; a trip or a theft on f moves
f alone, so r_f rises. r is scaled by its own robust spread over the preceding days (at least the
meter's σ). Two scores come out per feeder head, one-sided (a rise in net load; a fall is a line
outage or another feeder's trip, which other detectors name): `short` (the median of the last
`short_window` samples: a trip of an hour or more) and `long` (the mean over `long_window`
samples, a slow accumulation in the spirit of a CUSUM: a theft that lasts a day or more).

Causal (each sample sees only itself and the past), vectorised with numpy, and tied to no grid:
the feeders, their PV and their points come from `points.csv` and `network.json`. With a single
PV feeder c is 0 and r is the plain deviation from the profile.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from anomaly.features import _nanmedian_last, _rolling_median, _shift, samples_per_day

#: feeder-level score names, in the order of the last axis of `feeder_scores`
FEEDER_SCORES: tuple[str, ...] = ("feeder_short", "feeder_long")


def feeder_heads(points: pd.DataFrame, columns: list[str]) -> list[str]:
    """The feeder-head active-power points among `columns` (line points of quantity p_mw; a feeder
    head is metered at its busbar end, so positive is power into the feeder)."""
    pts = points.loc[columns]
    return [p for p in columns if pts.at[p, "element_type"] == "line" and pts.at[p, "quantity"] == "p_mw"]


def _is_pv(net: object) -> pd.Series:
    sgen = net.sgen  # type: ignore[attr-defined]
    text = sgen.get("type", pd.Series("", index=sgen.index)).astype(str)
    if "profile" in sgen:
        text = text + " " + sgen.profile.astype(str)
    pv = text.str.contains("pv", case=False)
    return pv if pv.any() else pd.Series(True, index=sgen.index)  # no type said: every generator


def feeder_pv(net: object, points: pd.DataFrame, heads: list[str]) -> np.ndarray:
    """Installed PV (MW, nominal) downstream of each feeder head: generators on the buses reached
    from the line's far end without passing its metered end or a transformer's bus."""
    line, trafo, sgen = net.line, net.trafo, net.sgen  # type: ignore[attr-defined]
    stop = {int(b) for b in trafo.hv_bus} | {int(b) for b in trafo.lv_bus}
    adjacent: dict[int, set[int]] = {}
    closed = line.in_service.astype(bool) if "in_service" in line else pd.Series(True, index=line.index)
    for row in line[closed].itertuples():
        a, b = int(row.from_bus), int(row.to_bus)
        adjacent.setdefault(a, set()).add(b)
        adjacent.setdefault(b, set()).add(a)
    switch = getattr(net, "switch", None)
    if switch is not None and len(switch):
        for row in switch[(switch.et == "b") & switch.closed.astype(bool)].itertuples():
            a, b = int(row.bus), int(row.element)
            adjacent.setdefault(a, set()).add(b)
            adjacent.setdefault(b, set()).add(a)
    pv = sgen[_is_pv(net) & sgen.in_service.astype(bool)]
    pv_by_bus = pv.groupby("bus").p_mw.sum()
    out = np.zeros(len(heads))
    for k, name in enumerate(heads):
        index = int(points.at[name, "element"])
        if index not in line.index:
            continue
        side = str(points.at[name, "side"] or "from")
        near = int(line.at[index, "to_bus" if side == "to" else "from_bus"])
        far = int(line.at[index, "from_bus" if side == "to" else "to_bus"])
        seen, todo = {near, far}, [far]
        while todo:
            bus = todo.pop()
            for nxt in adjacent.get(bus, ()):
                if nxt not in seen and nxt not in stop:
                    seen.add(nxt)
                    todo.append(nxt)
        seen.discard(near)
        out[k] = float(pv_by_bus.reindex(sorted(seen)).fillna(0.0).sum())
    return out


def _fleet_others(dev: np.ndarray, pv: np.ndarray) -> np.ndarray:
    """(time, feeder) the other feeders' shortfall per MW of PV, pooled: Σ d_g / Σ PV_g over the
    feeders g ≠ f with PV and a value; with three or more such feeders the one farthest from the
    others (a trip, a theft or a lying meter of its own) is left out. 0 where no other feeder has PV."""
    n_t, n_f = dev.shape
    out = np.zeros((n_t, n_f))
    for f in range(n_f):
        others = [g for g in range(n_f) if g != f and pv[g] > 0]
        if not others:
            continue
        d = dev[:, others]
        w = np.where(np.isnan(d), 0.0, pv[others][None, :])
        d = np.nan_to_num(d)
        if len(others) >= 3:
            u = d / pv[others][None, :]
            total = w.sum(axis=1, keepdims=True)
            pooled = (d * (w > 0)).sum(axis=1, keepdims=True) / np.where(total > 0, total, 1.0)
            worst = np.abs(np.where(w > 0, u - pooled, 0.0)).argmax(axis=1)
            w[np.arange(n_t), worst] = 0.0
        total = w.sum(axis=1)
        out[:, f] = np.where(total > 0, (d * (w > 0)).sum(axis=1) / np.where(total > 0, total, 1.0), 0.0)
    return out


def feeder_residual(
    telemetry: pd.DataFrame,
    sigma: np.ndarray,
    pv: np.ndarray,
    *,
    history_days: int = 7,
    min_days: int = 3,
    scale_days: int = 3,
    shrink: float = 2.0,
) -> np.ndarray:
    """(time, head) r_f scaled by its robust spread (module doc); 0 until `min_days` of history."""
    raw = telemetry.to_numpy(dtype=float)
    n_t, n_f = raw.shape
    if n_t == 0 or n_f == 0:
        return np.zeros((n_t, n_f))
    day = samples_per_day(pd.DatetimeIndex(telemetry.index))
    measured = np.where(raw == 0.0, np.nan, raw)  # a zero-filled dropout is no reading
    shifted = np.stack([_shift(measured, d * day) for d in range(1, history_days + 1)], axis=-1)
    profile, days_seen = _nanmedian_last(shifted)
    dev = measured - profile
    cloud = _fleet_others(dev, pv)
    # at night (and on a steady day) the others' deviations are load noise divided by their PV,
    # which the correction would amplify onto f: only a shift well beyond c's usual size counts
    slow = max(day // 8, 1)
    usual = 1.4826 * _rolling_median(np.abs(_shift(cloud, 1)), scale_days * day, min_periods=day // 2, step=slow)
    usual = np.nan_to_num(usual, nan=np.inf)
    noise = np.where(np.isfinite(usual), shrink * usual, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cloud = np.nan_to_num(cloud * cloud**2 / (cloud**2 + noise**2))  # shrinks the small, keeps the large
    resid = dev - cloud * pv[None, :]
    spread = 1.4826 * _rolling_median(np.abs(_shift(resid, 1)), scale_days * day, min_periods=day // 2, step=slow)
    scale = np.fmax(np.nan_to_num(spread, nan=np.inf), sigma[None, :])
    z = resid / scale
    z[(days_seen < min_days) | np.isnan(z)] = 0.0
    return z


def feeder_scores(
    telemetry: pd.DataFrame,
    points: pd.DataFrame,
    net: object,
    *,
    short_window: int = 4,
    long_window: int = 96,
    recent_window: int = 8,
) -> tuple[list[str], np.ndarray]:
    """(feeder-head points, (time, head, FEEDER_SCORES)) of a telemetry frame; one-sided (≥ 0)."""
    cols = list(telemetry.columns)
    heads = feeder_heads(points, cols)
    n_t = len(telemetry)
    if not heads:
        return heads, np.zeros((n_t, 0, len(FEEDER_SCORES)))
    pv = feeder_pv(net, points, heads)
    sigma = points.loc[heads, "sigma"].to_numpy(dtype=float)
    z = feeder_residual(telemetry[heads], sigma, pv)
    short = _rolling_median(z, short_window)  # a median: one wild sample does not carry it
    clipped = np.clip(z, -6.0, 6.0)  # nor the mean of the slow score
    csum = np.cumsum(np.concatenate([np.zeros((1, len(heads))), clipped]), axis=0)
    lag = np.minimum(np.arange(1, n_t + 1), long_window)
    long = (csum[1:] - csum[np.arange(1, n_t + 1) - lag]) / lag[:, None]
    # ... only while the shift is still there: the last `recent_window` samples lean the same way
    # (a mean over a day that ended a theft or a trip must not hold the alarm for a day after it)
    short_lag = np.minimum(np.arange(1, n_t + 1), recent_window)
    now = (csum[1:] - csum[np.arange(1, n_t + 1) - short_lag]) / short_lag[:, None]
    long = np.where(now > 0, np.minimum(long, 2 * now), 0.0)
    out = np.stack([np.clip(short, 0.0, None), np.clip(long, 0.0, None)], axis=-1)
    return heads, np.nan_to_num(out)
