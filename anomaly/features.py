"""Per-point physical features for the lab's detectors, computed for a whole scenario at once.

Every feature is a property of one point against itself, its own daily profile, its meter's σ or
the twin's physics, never of a column position: a model trained on one grid's points scores any
other grid's points. Features are causal (each sample sees only itself and the past), so what a
detector finds offline it would find live, with the same delay.

Arrays are (time, point, feature); `FEATURES` names the last axis. Everything is vectorised with
pandas rolling windows and numpy (no Python loop over samples).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: feature names, in the order of the last axis of `point_features`
FEATURES: tuple[str, ...] = (
    "z_recent",  # (x − median of the last few samples) / robust step scale: spikes and jumps
    "z_daily",  # (x − same time of day on previous days) / robust day-to-day scale
    "z_sustained",  # rolling median of z_daily: a persistent shift (bias, drift, grid events)
    "slope",  # change of z_sustained over the slope window: drift
    "flat_run",  # samples in a row exactly equal to the one before: stuck
    "missing_run",  # samples in a row missing: dropout
    "zero_run",  # samples in a row at exactly zero on a point that normally is not: dropout as zeros
    "limit",  # how far past its physical limit (v outside 0.9..1.1 pu, oil above 95 °C), in σ
    "resid",  # the twin's normalised residual of this measurement (0 where not estimated)
)
F = {name: k for k, name in enumerate(FEATURES)}

#: physical limits per quantity (low, high); beyond them the `limit` feature grows in σ
LIMITS: dict[str, tuple[float, float]] = {"v_pu": (0.9, 1.1), "temp_oil_c": (-40.0, 95.0)}


def samples_per_day(index: pd.DatetimeIndex) -> int:
    """Samples per day of a regular time index (96 at 15 minutes); 96 when it cannot tell."""
    if len(index) < 2:
        return 96
    step = pd.Series(index).diff().median()
    if pd.isna(step) or step <= pd.Timedelta(0):
        return 96
    return max(1, int(round(pd.Timedelta(days=1) / step)))


def _run_length(flag: np.ndarray) -> np.ndarray:
    """For each (t, p): how many samples in a row up to and including t have `flag` set."""
    flag = flag.astype(bool)
    t = np.arange(flag.shape[0])[:, None]
    last_false = np.where(~flag, t, -1)
    last_false = np.maximum.accumulate(last_false, axis=0)
    return (t - last_false).astype(float)


def _rolling_median(frame: pd.DataFrame, window: int, min_periods: int = 1) -> pd.DataFrame:
    return frame.rolling(window, min_periods=min_periods).median()


def point_features(
    telemetry: pd.DataFrame,
    points: pd.DataFrame,
    *,
    residuals: pd.DataFrame | None = None,
    recent: int = 4,
    history_days: int = 7,
    sustain: int = 4,
    slope_window: int = 8,
) -> np.ndarray:
    """Features (time, point, FEATURES) of a wide telemetry frame whose columns are in `points`.

    `residuals` (time × point, the physics detector's normalised residuals) fills `resid`;
    points it does not cover get 0 (no evidence either way)."""
    cols = list(telemetry.columns)
    sigma = points.loc[cols, "sigma"].to_numpy(dtype=float)
    quantity = points.loc[cols, "quantity"].to_numpy()
    raw = telemetry.to_numpy(dtype=float)
    n_t, n_p = raw.shape
    day = samples_per_day(pd.DatetimeIndex(telemetry.index))
    missing = np.isnan(raw)
    filled = telemetry.ffill()
    x = filled.to_numpy(dtype=float)

    # robust step scale: median |Δx| over the last day, as a σ of one step (floor: the meter's σ)
    step = filled.diff().abs()
    step_scale = 1.4826 * _rolling_median(step.shift(1), day, min_periods=4).to_numpy() / np.sqrt(2.0)
    step_scale = np.fmax(np.nan_to_num(step_scale, nan=0.0), sigma)
    recent_med = _rolling_median(filled.shift(1), recent, min_periods=1).to_numpy()
    z_recent = np.nan_to_num((x - recent_med) / step_scale)

    # daily profile: the median of the same time of day on up to `history_days` previous days
    shifted = np.stack([filled.shift(d * day).to_numpy() for d in range(1, history_days + 1)])
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            baseline = np.nanmedian(shifted, axis=0)
    no_history = np.isnan(baseline)  # the first day: no daily profile yet, so no daily features
    baseline = np.where(no_history, recent_med, baseline)
    dev = x - baseline
    # day-to-day spread from deviations that had a profile to deviate from (a quarter day at least)
    spread = pd.DataFrame(np.where(no_history, np.nan, np.abs(dev)))
    day_scale = 1.4826 * _rolling_median(spread.shift(1), day, min_periods=max(day // 4, 4)).to_numpy()
    no_history |= np.isnan(day_scale)
    day_scale = np.fmax(np.nan_to_num(day_scale, nan=1.0), np.fmax(step_scale, sigma))
    z_daily = np.where(no_history, 0.0, np.nan_to_num(dev / day_scale))
    z_sustained = _rolling_median(pd.DataFrame(z_daily), sustain).to_numpy()
    slope = z_sustained - pd.DataFrame(z_sustained).shift(slope_window).fillna(0.0).to_numpy()

    same = np.zeros_like(missing)
    same[1:] = (raw[1:] == raw[:-1]) & ~missing[1:]
    flat_run = _run_length(same)
    missing_run = _run_length(missing)
    typical = np.nanmedian(np.abs(np.where(np.isnan(baseline), x, baseline)), axis=0) if n_t else np.zeros(n_p)
    zero_run = _run_length((raw == 0.0) & (typical > 10 * sigma)[None, :])

    limit = np.zeros((n_t, n_p))
    for q, (lo, hi) in LIMITS.items():
        cols_q = quantity == q
        if cols_q.any():
            v = x[:, cols_q]
            limit[:, cols_q] = np.nan_to_num(np.fmax(v - hi, lo - v).clip(min=0.0) / sigma[cols_q])

    resid = np.zeros((n_t, n_p))
    if residuals is not None and len(residuals.columns):
        r = residuals.reindex(index=telemetry.index, columns=cols).to_numpy(dtype=float)
        resid = np.nan_to_num(r)

    out = np.stack([z_recent, z_daily, z_sustained, slope, flat_run, missing_run, zero_run, limit, resid], axis=-1)
    out[missing] = np.where(np.arange(len(FEATURES)) == F["missing_run"], out[missing], 0.0)
    return out
