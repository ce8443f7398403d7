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
    "z_long",  # mean of z_daily over the last hours: a small shift that lasts (theft, a tripped unit)
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


def _nanmedian_last(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(median over the last axis ignoring NaN, count of valid values), by one sort (NaN sort last)."""
    ordered = np.sort(stack, axis=-1)
    valid = (~np.isnan(stack)).sum(axis=-1)
    lo = np.clip((valid - 1) // 2, 0, None)[..., None]
    hi = np.clip(valid // 2, 0, None)[..., None]
    med = 0.5 * (np.take_along_axis(ordered, lo, -1)[..., 0] + np.take_along_axis(ordered, hi, -1)[..., 0])
    return np.where(valid > 0, med, np.nan), valid


def _rolling_median(values: np.ndarray, window: int, min_periods: int = 1, step: int = 1) -> np.ndarray:
    """Median of the last `window` rows (this one included) per column, ignoring NaN (NaN with
    fewer than `min_periods` valid). With `step` > 1 it is evaluated every `step` rows and held
    (a scale over a day does not move within two hours). Numpy sliding windows, chunked by columns."""
    n_t, n_p = values.shape
    if n_t == 0:
        return values.copy()
    padded = np.concatenate([np.full((window - 1, n_p), np.nan), values])
    views = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)[::step]  # (T/step, P, window)
    out = np.empty((views.shape[0], n_p))
    chunk = max(1, 20_000_000 // max(views.shape[0] * window, 1))
    for c in range(0, n_p, chunk):
        med, valid = _nanmedian_last(views[:, c : c + chunk])
        out[:, c : c + chunk] = np.where(valid >= min_periods, med, np.nan)
    return np.repeat(out, step, axis=0)[:n_t] if step > 1 else out


def _shift(values: np.ndarray, k: int) -> np.ndarray:
    """Rows moved down by k (the first k rows NaN): the value k samples before."""
    out = np.full_like(values, np.nan)
    if k < len(values):
        out[k:] = values[: len(values) - k]
    return out


def point_features(
    telemetry: pd.DataFrame,
    points: pd.DataFrame,
    *,
    residuals: pd.DataFrame | None = None,
    recent: int = 4,
    history_days: int = 7,
    sustain: int = 4,
    slope_window: int = 8,
    min_days: int = 3,
    long_window: int = 16,
    scale_every: int = 0,
) -> np.ndarray:
    """Features (time, point, FEATURES) of a wide telemetry frame whose columns are in `points`.

    `residuals` (time × point, the physics detector's normalised residuals) fills `resid`;
    points it does not cover get 0 (no evidence either way). `scale_every`: rows between two
    estimates of the robust scales (0: an eighth of a day; a scale over a day does not move
    within three hours, but a live window of minutes needs it from its first rows on)."""
    cols = list(telemetry.columns)
    sigma = points.loc[cols, "sigma"].to_numpy(dtype=float)
    quantity = points.loc[cols, "quantity"].to_numpy()
    raw = telemetry.to_numpy(dtype=float)
    n_t, n_p = raw.shape
    day = samples_per_day(pd.DatetimeIndex(telemetry.index))
    missing = np.isnan(raw)
    x = telemetry.ffill().to_numpy(dtype=float)

    # robust step scale: median |Δx| over the last day, as a σ of one step (floor: the meter's σ)
    step = np.abs(np.diff(x, axis=0, prepend=np.nan))
    slow = scale_every if scale_every > 0 else max(day // 8, 1)
    step_scale = 1.4826 * _rolling_median(_shift(step, 1), day, min_periods=4, step=slow) / np.sqrt(2.0)
    step_scale = np.fmax(np.nan_to_num(step_scale, nan=0.0), sigma)
    typical = np.nanmedian(np.abs(raw), axis=0) if n_t else np.zeros(n_p)
    measured = np.where((raw == 0.0) & (typical > 10 * sigma)[None, :], np.nan, raw)  # no gaps, no zero fill
    recent_med = _rolling_median(_shift(measured, 1), recent)  # measured values only: no jump after a gap
    z_recent = np.nan_to_num((x - recent_med) / step_scale)

    # daily profile: the median of the same time of day on up to `history_days` previous days, of
    # measured values only (a gap or a zero-filled dropout must not become tomorrow's profile), and
    # only once `min_days` such days exist (a median of one or two days follows any bad day)
    shifted = np.stack([_shift(measured, d * day) for d in range(1, history_days + 1)], axis=-1)
    baseline, days_seen = _nanmedian_last(shifted)
    no_history = np.isnan(baseline)
    baseline = np.where(no_history, recent_med, baseline)
    dev = x - baseline
    # day-to-day spread from deviations that had a profile to deviate from (a quarter day at least)
    spread = np.where(no_history, np.nan, np.abs(dev))
    no_history |= days_seen < min(min_days, history_days)
    day_scale = 1.4826 * _rolling_median(_shift(spread, 1), day, min_periods=max(day // 4, 4), step=slow)
    no_history |= np.isnan(day_scale)
    # ... and the spread of this time of day over the previous days (midday PV on a cloudy day
    # moves far more than the night does): the scale is the larger of the two
    tod_scale, _ = _nanmedian_last(np.abs(shifted - baseline[..., None]))
    tod_scale = 1.4826 * np.nan_to_num(tod_scale, nan=0.0)
    day_scale = np.fmax(np.fmax(np.nan_to_num(day_scale, nan=1.0), tod_scale), np.fmax(step_scale, sigma))
    z_daily = np.where(no_history, 0.0, np.nan_to_num(dev / day_scale))
    z_sustained = _rolling_median(z_daily, sustain)
    # drift: how far the sustained deviation grew away from the profile over the slope window (a
    # return towards the profile, when a fault or an outage ends, is not a drift)
    before = np.nan_to_num(_shift(z_sustained, slope_window))
    slope = np.sign(z_sustained) * np.clip(np.abs(z_sustained) - np.abs(before), 0.0, None)

    same = np.zeros_like(missing)
    same[1:] = (raw[1:] == raw[:-1]) & ~missing[1:]
    flat_run = _run_length(same)
    missing_run = _run_length(missing)
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

    clipped = np.clip(z_daily, -6.0, 6.0)  # one spike must not carry the mean
    csum = np.cumsum(np.concatenate([np.zeros((1, n_p)), clipped]), axis=0)
    lag = np.minimum(np.arange(1, n_t + 1), long_window)
    z_long = (csum[1:] - csum[np.arange(1, n_t + 1) - lag]) / lag[:, None]
    # ... only while the shift is still there: the last `sustain` samples lean the same way (the
    # mean of a window that ended a long outage must not hold the alarm for hours after it)
    short = np.minimum(np.arange(1, n_t + 1), sustain)
    now = (csum[1:] - csum[np.arange(1, n_t + 1) - short]) / short[:, None]
    z_long = np.where(
        np.sign(now) == np.sign(z_long), np.sign(z_long) * np.minimum(np.abs(z_long), 2 * np.abs(now)), 0.0
    )

    out = np.stack(
        [z_recent, z_daily, z_sustained, slope, flat_run, missing_run, zero_run, limit, resid, z_long], axis=-1
    )
    out[missing] = np.where(np.arange(len(FEATURES)) == F["missing_run"], out[missing], 0.0)
    return out
