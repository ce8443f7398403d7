"""Peer detector: a meter against the meters that physically measure the same thing, for the slow
lies (bias, drift) that one point's own history hides inside its day-to-day spread.

Every kind of peer needs nothing but `points.csv`:

- **voltages**: every bus voltage of a grid moves with the upstream voltage (the MV network, the
  transformer's tap) by nearly the same amount; what one bus does that the median of the others
  does not is either local load or a lying meter;
- **the two sides of a transformer**: active and reactive power in at HV are out at LV plus the
  transformer's losses (a few per cent), so a deviation on one side the other does not mirror is
  a meter's, not the grid's;
- **P, Q and I at one line end**: I = S / (√3 U), S = √(P² + Q²), with U the end's voltage, which
  moves by a few per cent; the current a meter reports is compared with k·S, k the ratio I / S
  over the preceding days, and a bias or drift of any of the three shows on the current point
  (the same element as the faulty meter, which is what an operator needs to send someone to);
- **generators** (smart-metered PV units of one LV grid): each unit's output as a share of its
  usual daily peak (the highest of the preceding days') follows the shares of its sky peers, the
  `SKY_PEERS` units whose shares followed its own most closely over the preceding days (the same
  weather and orientation); compared in daylight only (those peers above `DAYLIGHT_SHARE`), in
  MW. A unit reading nothing at an hour it usually produces is a trip or a dead meter, scored on
  a tight scale (`TRIPPED_SPREAD`, widened by how far the unit usually is from its peers); a unit
  still producing but apart from them on a wide one (`LIVE_SPREAD_FLOOR`: a cloud over one roof).

Each point's deviation from its daily profile (the same time on earlier days, as in
`anomaly.features`) is compared with its peers' deviation; the residual is scaled by its own
robust spread over the preceding days (at least the meter's σ) and smoothed by a median over
`sustain` samples (a bias lasts; a one-sample spike is the temporal detector's). Causal,
vectorised, tied to no grid's columns: peers come from each point's quantity, element and side.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import pandas as pd

from anomaly.features import _nanmedian_last, _rolling_median, _shift, samples_per_day

#: below this a bus voltage is a de-energised bus, not a reading to compare
DEAD_BUS_PU = 0.5
#: up to this many voltage points each is compared with the median of the others; above it with
#: the median of all (the same within one rank, and one sort instead of one per point)
LEAVE_ONE_OUT_MAX = 24
#: generators are compared only while the others produce at least this share of their daily peak
DAYLIGHT_SHARE = 0.1
#: ... and count as producing (the sun is up) from this share
SUN_UP_SHARE = 0.02
#: a generator's share of its peak is compared with its sky peers': the units whose shares
#: followed its own most closely on the preceding days
SKY_PEERS = 2
#: ... on a scale of at least this share while the unit still produces (a cloud over one roof)
LIVE_SPREAD_FLOOR = 0.25
#: a unit reading nothing while its peers produce is scored on this share: at the least daylight
#: the comparison accepts (DAYLIGHT_SHARE) its shortfall reaches 4, the pipeline's least threshold
TRIPPED_SPREAD = DAYLIGHT_SHARE / 4
#: ... or this share of how far the unit usually is from its sky peers, when more
APART_WEIGHT = 0.5


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


def _lead(values: np.ndarray, k: int) -> np.ndarray:
    """Rows moved up by k (the last k rows NaN): the value k samples later."""
    out = np.full_like(values, np.nan)
    if 0 < k < len(values):
        out[:-k] = values[k:]
    return out


def _generator_columns(points: pd.DataFrame, cols: list[str]) -> np.ndarray:
    """Positions of generator active-power points, when there are at least three (a unit and a
    median of two others); else none."""
    pts = points.loc[cols]
    gens = np.flatnonzero(((pts.element_type == "sgen") & (pts.quantity == "p_mw")).to_numpy())
    return gens if len(gens) >= 3 else gens[:0]


class _Fleet(NamedTuple):
    """The smart-metered generators of a grid, per (time, unit) where it says so."""

    gens: np.ndarray  # their positions among the points
    share: np.ndarray  # output as a share of the unit's usual daily peak
    peak: np.ndarray  # that usual peak (median of the preceding days' peaks), MW
    others: np.ndarray  # the median share of the other units
    others_spread: np.ndarray  # how far the others disagree among themselves (robust σ of their shares)
    daylight: np.ndarray  # the others produce enough to compare with (DAYLIGHT_SHARE)
    sun_up: np.ndarray  # this unit or the others produce anything (SUN_UP_SHARE)
    usual: np.ndarray  # the least share the unit usually makes within an hour of this time of day
    apart: np.ndarray  # how far its share usually is from its sky peers' (inf: no history yet)


def _fleet(
    measured: np.ndarray, points: pd.DataFrame, cols: list[str], day: int, history_days: int, min_days: int
) -> _Fleet:
    gens = _generator_columns(points, cols)
    n_t = measured.shape[0]
    output = np.abs(measured[:, gens])  # a generator's sign convention varies; its size does not
    n_days = -(-n_t // day)
    padded = np.full((n_days * day, len(gens)), np.nan)
    padded[:n_t] = output
    # a day's peak: its second-highest reading (a one-sample spike is not the unit's capacity)
    by_day = np.sort(np.where(np.isnan(padded), -np.inf, padded).reshape(n_days, day, len(gens)), axis=1)
    daily_peak = by_day[:, -2] if day >= 2 else by_day[:, -1]
    daily_peak = np.where(np.isfinite(daily_peak), daily_peak, np.nan)  # (day, unit); a day without readings: NaN
    usual = np.full_like(daily_peak, np.nan)
    for d in range(n_days):  # the highest peak of the preceding days (causal): the unit's capacity shows
        past = daily_peak[max(0, d - history_days) : d]  # on its sunniest day; a dull week's median is noise
        valid = (~np.isnan(past)).sum(axis=0)
        if len(past) >= min_days:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                usual[d] = np.where(valid >= min_days, np.nanmax(past, axis=0), np.nan)
    peak = np.repeat(usual, day, axis=0)[:n_t]
    settled = ~np.isnan(peak)  # a usual peak from preceding days: the unit can be compared
    # until preceding days give one, the highest output seen so far stands in for the usual peak
    # (enough to tell day from night, not to judge the unit by)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        so_far = np.fmax.accumulate(np.where(np.isnan(output), -np.inf, output), axis=0)
    noise = points.loc[cols, "sigma"].to_numpy(dtype=float)[gens]
    peak = np.where(np.isnan(peak) & (so_far > 10 * noise[None, :]), so_far, peak)  # not a night's noise
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(peak > 0, output / peak, np.nan)
    others = np.full_like(share, np.nan)
    spread = np.full_like(share, np.nan)
    daylight = np.zeros(share.shape, dtype=bool)
    sun_up = np.zeros(share.shape, dtype=bool)
    # the hours a unit usually produces (its share at this time of day on the preceding days): a
    # dark day is still day, and a unit facing west still produces when the others have stopped
    usual_share, _ = _nanmedian_last(np.stack([_shift(share, d * day) for d in range(1, history_days + 1)], axis=-1))
    # ... from an hour before to an hour after (the preceding days' values, so still causal), and
    # for the hour after its peers last produced (a sunny evening after dull days); the unit's own
    # recent output counts only until it has such days (a meter that lies at night must not make
    # its own night a day)
    edge = max(day // 24, 1)
    # ... and the share it makes all through that hour either side (what a trip takes away)
    usual_core = np.fmin.reduce(
        [_shift(usual_share, k) for k in range(edge + 1)] + [_lead(usual_share, k) for k in range(1, edge + 1)]
    )
    usual_share = np.fmax.reduce(
        [_shift(usual_share, k) for k in range(edge + 1)] + [_lead(usual_share, k) for k in range(1, edge + 1)]
    )
    recent_share = np.fmax.reduce([_shift(share, k) for k in range(edge + 1)])
    peers, apart = _sky_peers(share, day, history_days, min_days)
    for k in range(len(gens)):
        for first in range(0, n_t, day):
            rows = slice(first, min(first + day, n_t))
            rest = share[rows][:, peers[first // day][k]]
            med, valid = _nanmedian_last(rest)
            mad, _ = _nanmedian_last(np.abs(rest - med[:, None]))
            others[rows, k], spread[rows, k] = med, 1.4826 * mad
            daylight[rows, k] = (valid >= 2) & (med >= DAYLIGHT_SHARE) & settled[rows, k]
        own = np.where(np.isnan(usual_share[:, k]), recent_share[:, k], usual_share[:, k])
        lately = np.fmax.reduce([_shift(others[:, k : k + 1], j)[:, 0] for j in range(edge + 1)])  # the last hour
        producing = np.nan_to_num(np.fmax(lately, own))
        with np.errstate(invalid="ignore", divide="ignore"):  # a night's noise is no sun (a dull day's small peak)
            floor = np.fmax(SUN_UP_SHARE, np.nan_to_num(4.0 * noise[k] / peak[:, k], nan=np.inf))
        sun_up[:, k] = producing >= floor
    apart_now = np.repeat(apart, day, axis=0)[:n_t]
    return _Fleet(gens, share, peak, others, spread, daylight, sun_up, usual_core, apart_now)


def _sky_peers(
    share: np.ndarray, day: int, history_days: int, min_days: int
) -> tuple[list[list[np.ndarray]], np.ndarray]:
    """Per day and unit, the other units that share its sky: the `SKY_PEERS` whose share of their
    peak stayed closest to the unit's over the preceding days' daylight (median |difference|), so
    a unit facing west is compared with the units facing west, and a unit in another village's
    weather with the units in it. Until `min_days` days of history exist, all the other units.
    Also, per day and unit, how far the unit usually is from those peers (the mean of their
    median distances; inf without history): how well they foretell it."""
    n_t, n_g = share.shape
    out: list[list[np.ndarray]] = []
    apart = np.full((-(-n_t // day), n_g), np.inf)
    everyone = [np.delete(np.arange(n_g), k) for k in range(n_g)]
    if n_g < 2:  # nobody to compare with
        return [everyone for _first in range(0, n_t, day)], apart
    for d, first in enumerate(range(0, n_t, day)):
        past = share[max(0, first - history_days * day) : first]
        fleet, _ = _nanmedian_last(past) if len(past) else (np.zeros(0), None)
        lit = past[np.nan_to_num(fleet) >= DAYLIGHT_SHARE] if len(past) else past
        if len(past) < min_days * day or len(lit) < min_days:
            out.append(everyone)
            continue
        with warnings.catch_warnings():  # a unit without a reading in the window: no distance
            warnings.simplefilter("ignore", RuntimeWarning)
            distance = np.nanmedian(np.abs(lit[:, :, None] - lit[:, None, :]), axis=0)
        np.fill_diagonal(distance, np.inf)
        distance = np.nan_to_num(distance, nan=np.inf)
        chosen = [np.argsort(distance[k], kind="stable")[:SKY_PEERS] for k in range(n_g)]
        out.append(chosen)
        apart[d] = [float(distance[k, c].mean()) for k, c in enumerate(chosen)]
    return out, apart


def _generator_residual(
    measured: np.ndarray, points: pd.DataFrame, cols: list[str], day: int, history_days: int, min_days: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(time, point) at each generator's P point in daylight: (share − its sky peers' median
    share) × its usual peak, MW (a tripped unit: its share − what it usually makes then); its
    scale, MW: the peers' own disagreement at that time, at least `LIVE_SPREAD_FLOOR` of its peak
    while it produces (`TRIPPED_SPREAD` or more when it has tripped); and where it has tripped
    (True: judged on that scale alone, not its usual distance). NaN elsewhere."""
    n_t, n_p = measured.shape
    out, scale = np.full((n_t, n_p), np.nan), np.full((n_t, n_p), np.nan)
    dead = np.zeros((n_t, n_p), dtype=bool)
    fleet = _fleet(measured, points, cols, day, history_days, min_days)
    if not len(fleet.gens):
        return out, scale, dead
    out[:, fleet.gens] = np.where(fleet.daylight, (fleet.share - fleet.others) * fleet.peak, np.nan)
    # a unit producing nothing (its reading within the meter's noise of zero) at an hour it
    # usually produces, while its sky peers produce, is a tripped inverter or a dead meter, as PV
    # monitoring's "no production in daylight" check says: its shortfall is what it usually makes
    # at this hour (or what its peers make, if less), on a tight scale. A unit still producing,
    # less or more than its peers, is as likely a cloud over its roof alone (or, in SimBench,
    # another site's weather): judged on a wider scale
    noise = points.loc[cols, "sigma"].to_numpy(dtype=float)[fleet.gens]
    zero = np.abs(measured[:, fleet.gens]) <= 4.0 * noise[None, :]
    expected = np.fmin(fleet.others, np.nan_to_num(fleet.usual, nan=0.0))
    tripped = fleet.daylight & zero & (expected >= DAYLIGHT_SHARE)
    tripped &= _shift(tripped.astype(float), 1) == 1  # for two samples in a row: not a passing shadow
    out[:, fleet.gens] = np.where(tripped, (fleet.share - expected) * fleet.peak, out[:, fleet.gens])
    tight = np.fmax(TRIPPED_SPREAD, APART_WEIGHT * fleet.apart)  # peers that foretell it less, less sure
    floor = np.where(tripped, tight, LIVE_SPREAD_FLOOR)
    scale[:, fleet.gens] = np.fmax(fleet.others_spread, floor) * fleet.peak
    dead[:, fleet.gens] = tripped
    return out, scale, dead


def generator_sun_up(
    telemetry: pd.DataFrame, points: pd.DataFrame, *, history_days: int = 7, min_days: int = 3, after: int = 4
) -> np.ndarray:
    """(time, point) True at a smart-metered generator while the sun is up (it or its peers
    produce), and for `after` samples more (the features' windows, `sustain` samples in
    `anomaly.features`, still hold the day's output then): its own history says little then (the
    weather moves every unit); its peers say more."""
    cols = list(telemetry.columns)
    out = np.zeros(telemetry.shape, dtype=bool)
    raw = telemetry.to_numpy(dtype=float)
    day = samples_per_day(pd.DatetimeIndex(telemetry.index))
    fleet = _fleet(raw, points, cols, day, history_days, min_days)
    if len(fleet.gens):
        out[:, fleet.gens] = np.logical_or.reduce(
            [_shift(fleet.sun_up.astype(float), k) == 1 for k in range(after + 1)]
        )
    return out


def peer_kinds(points: pd.DataFrame, cols: list[str]) -> np.ndarray:
    """Per point, which comparison `peer_scores` makes of it: "voltage", "trafo", "current",
    "generator" or "" (none); each kind has its own spread of clean residuals, so its own threshold."""
    pts = points.loc[cols]
    kind = np.full(len(cols), "", dtype=object)
    kind[(pts.quantity == "v_pu").to_numpy()] = "voltage"
    kind[((pts.element_type == "trafo") & pts.quantity.isin(["p_mw", "q_mvar"])).to_numpy()] = "trafo"
    kind[((pts.element_type == "line") & (pts.quantity == "i_ka")).to_numpy()] = "current"
    kind[_generator_columns(points, cols)] = "generator"
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
    gens = _generator_columns(points, cols)
    if len(gens):  # generators: against the fleet at the same time, on the fleet's own scale ...
        gen_resid, gen_scale, tripped = _generator_residual(measured, points, cols, day, history_days, min_days)
        resid[:, gens] = gen_resid[:, gens]
        own = 1.4826 * _rolling_median(
            np.abs(_shift(resid[:, gens], 1)), scale_days * day, min_periods=day // 4, step=slow
        )
        # ... and at least the unit's own usual distance from it (units on other skies: SimBench
        # gives one grid's units the profiles of different sites)
        # (a tripped unit's shortfall is its own usual output: no usual distance widens that)
        own = np.where(tripped[:, gens], 0.0, np.nan_to_num(own, nan=0.0))
        scale[:, gens] = np.fmax(
            np.fmax(np.nan_to_num(gen_scale[:, gens], nan=np.inf), own),
            np.sqrt(2.0) * sigma[gens][None, :],
        )
    ratio = resid / scale
    if len(gens):  # a trip is already two samples of nothing: it counts as it stands, from onset to end,
        trip_z = np.where(tripped, ratio, np.nan)  # and leaves the sustained median of the hours around it
        ratio = np.where(tripped, np.nan, ratio)
    z = _rolling_median(ratio, sustain)
    if len(gens):
        z[:, gens] = np.where(tripped[:, gens], trip_z[:, gens], z[:, gens])
    return np.where(np.isnan(resid), 0.0, np.nan_to_num(z))  # no residual (a gap, a night): no score
