"""LabPipeline: physics residuals + per-point features → temporal and learned detectors → events.

`fit(scenarios)` learns, from the clean samples of the training scenarios (outside every label
window), each feature's robust centre and spread (`TemporalDetector`), an IsolationForest per
quantity (`LearnedDetector`), and each score component's threshold as a high quantile of its
clean values times a margin: calibrated on the data, not hand-set per grid. `detect(scenario)`
scores every point and sample, combines the components into one score per point (≥ 1: abnormal),
names the fault type the dominant component points to, and turns the scores into alarm events
with on/off delays and hysteresis (`anomaly.events`).

Nothing depends on a grid's column order: features are per point, per element and physical, so a
pipeline fitted on one grid detects on another with points it never saw. Picklable with joblib.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from anomaly.dataset import PointsNotInNetwork, Scenario
from anomaly.detectors.lab.feeder import FEEDER_SCORES, feeder_scores
from anomaly.detectors.lab.learned import LearnedDetector
from anomaly.detectors.lab.peers import generator_sun_up, peer_kinds, peer_scores
from anomaly.detectors.lab.physics import PhysicsDetector
from anomaly.detectors.lab.temporal import TemporalDetector
from anomaly.events import Hysteresis, combine
from anomaly.features import FEATURES, F, point_features, samples_per_day

log = logging.getLogger(__name__)

#: which feature points to which fault type (quantity-specific overrides in `_kinds`)
_KIND_OF_FEATURE = {
    "z_recent": "spike",
    "z_daily": "bias",
    "z_sustained": "bias",
    "slope": "drift",
    "flat_run": "stuck",
    "missing_run": "dropout",
    "zero_run": "dropout",
    "limit": "overvoltage",
    "resid": "bias",
    "z_long": "bias",
}
#: the chronological split whose telemetry precedes each split (the generator's OUT/ layout)
_PREVIOUS_SPLIT = {"validation": "train", "test": "validation"}
#: quantities whose meters move together when the grid moves
_MOVE_GROUP = {"p_mw": "flow", "q_mvar": "flow", "i_ka": "flow", "v_pu": "voltage", "temp_oil_c": "temperature"}
#: features that compare a point with its own daily profile
_PROFILE_FEATURES = ("z_daily", "z_sustained", "slope", "z_long")
#: ... and with its recent samples: the weather moves a PV unit's
_WEATHER_MOVED = ("z_recent", *_PROFILE_FEATURES)
#: features whose signed value matters (a shift up or down); the others are ≥ 0 magnitudes
_SIGNED = ("z_recent", "z_daily", "z_sustained", "slope", "resid", "z_long")


def _clean_mask(scenario: Scenario, margin: pd.Timedelta) -> np.ndarray:
    """(time, point) True where no label window (widened by `margin`) touches the point or its
    element, and no grid event the generator left unlabelled (scenario.json) is under way."""
    index, cols = scenario.telemetry.index, list(scenario.telemetry.columns)
    clean = np.ones((len(index), len(cols)), dtype=bool)
    labels = scenario.labels
    # grid events the generator made but did not label (scenario.json): not faults, not clean either
    unlabelled = [
        (pd.Timestamp(e["start"]), pd.Timestamp(e["end"]))
        for e in scenario.meta.get("unlabelled_events", [])
        if isinstance(e, dict) and e.get("start") and e.get("end")
    ]
    for start, end in unlabelled:
        clean[(index >= start - margin) & (index <= end + margin), :] = False
    if labels is None or not len(labels):
        return clean
    pts = scenario.points.loc[cols]
    for lab in labels.itertuples():
        rows = (index >= lab.start - margin) & (index <= lab.end + margin)
        # a measurement fault taints its point and the points of its element (the peer detector
        # compares them: a lying P shows on the current of the same line end); a grid event every
        # point (any may see it)
        if lab.point in cols:
            mine = pts.loc[lab.point]
            hit = np.asarray(
                (pts.element_type == mine.element_type).to_numpy() & (pts.element == mine.element).to_numpy()
            )
        else:
            hit = np.ones(len(cols), dtype=bool)
        clean[np.ix_(rows, hit)] = False
    return clean


class LabPipeline(BaseEstimator):
    """The lab's detector pipeline (see module doc). Parameters:

    `physics`: run the twin's estimator per step for the `resid` feature (off by default: it costs
    0.3-0.7 s per step on a 15-bus grid on this machine and measured no gain on the generator's
    data; the statistics alone score >100,000 point-samples/s); `history_days`: warm-up taken
    from the preceding split (0: none);
    `quantile`, `margin`: a component's threshold is `margin` × its clean `quantile`;
    `cap`: the most a threshold may exceed its floor, as a factor; `floors`: the least threshold
    per feature (robust z units, or samples for run lengths);
    `learned_weight`: 0 turns the IsolationForest component off; `learned_screen`: the share of
    a threshold some statistic must reach before the forest scores a row; `high`, `low`, `on_delay`,
    `off_delay`: the combiner's hysteresis; `max_rows`: clean rows sampled per fit;
    `n_estimators`: trees per forest; `random_state`;
    `feeder`: the feeder detector (`anomaly.detectors.lab.feeder`: each feeder head's net load
    against its profile with the PV fleet's weather taken out, for PV trips and thefts no meter
    of their own shows; needs the scenario's network); `peers`: the peer detector
    (`anomaly.detectors.lab.peers`: each voltage against the other voltages, each transformer
    side against the other, for biases and drifts); `moving_together`: from this many flow meters
    (P, Q, I) leaving their daily profile at once, none of them counts it (0: off)."""

    def __init__(
        self,
        physics: bool = False,
        history_days: int = 7,
        quantile: float = 0.9999,
        margin: float = 1.3,
        cap: float = 3.0,
        floors: dict[str, float] | None = None,
        learned_weight: float = 1.0,
        learned_screen: float = 0.5,
        high: float = 1.0,
        low: float = 0.7,
        on_delay: int = 1,
        off_delay: int = 1,
        max_rows: int = 300_000,
        n_estimators: int = 100,
        random_state: int = 0,
        feeder: bool = True,
        peers: bool = True,
        moving_together: int = 3,
    ) -> None:
        self.physics = physics
        self.history_days = history_days
        self.quantile = quantile
        self.margin = margin
        self.cap = cap
        self.floors = floors
        self.learned_weight = learned_weight
        self.learned_screen = learned_screen
        self.high = high
        self.low = low
        self.on_delay = on_delay
        self.off_delay = off_delay
        self.max_rows = max_rows
        self.n_estimators = n_estimators
        self.random_state = random_state
        self.feeder = feeder
        self.peers = peers
        self.moving_together = moving_together

    # -- features ---------------------------------------------------------------------------------
    def history(self, scenario: Scenario) -> pd.DataFrame | None:
        """The telemetry just before a chronological split, as warm-up for the daily profile: for
        OUT/validation the tail of OUT/train, for OUT/test that of OUT/validation (same points,
        contiguous in time; labels are never read). None when there is no such sibling."""
        previous = _PREVIOUS_SPLIT.get(str(scenario.meta.get("split", "")))
        if not self.history_days or previous is None:
            return None
        sibling = scenario.path.parent / previous
        if not (sibling / "telemetry.csv.gz").exists():
            return None
        from anomaly.dataset import read_points, read_telemetry

        try:
            before, _ = read_telemetry(sibling / "telemetry.csv.gz", read_points(sibling / "points.csv"))
        except Exception as exc:  # a damaged sibling costs the warm-up, not the detection
            log.warning(
                "%s: no warm-up history from %s (%s); the first day has no daily profile", scenario.path, sibling, exc
            )
            return None
        first = scenario.telemetry.index[0] if len(scenario.telemetry) else None
        if first is None or not len(before) or before.index[-1] >= first:
            return None
        before = before[before.index >= first - pd.Timedelta(days=self.history_days)]
        return before.reindex(columns=scenario.telemetry.columns)

    def _with_history(self, scenario: Scenario) -> pd.DataFrame:
        before = self.history(scenario)
        return scenario.telemetry if before is None else pd.concat([before, scenario.telemetry])

    def feeder_component(self, scenario: Scenario) -> tuple[list[str], np.ndarray] | None:
        """(feeder-head points, (time, head, FEEDER_SCORES)) of a scenario, or None when the
        feeder detector is off or the scenario has no network to say where the PV is."""
        if not getattr(self, "feeder", False):
            return None
        try:
            net = scenario.network()
        except PointsNotInNetwork:
            raise  # the point list and the grid disagree: nothing scored on them can be trusted
        except Exception as exc:  # no or unreadable network.json: the other detectors still run
            log.warning("%s: feeder detector off (%s)", scenario.path, exc)
            return None
        telemetry = self._with_history(scenario)
        heads, scores = feeder_scores(telemetry, scenario.points, net)
        return heads, scores[len(telemetry) - len(scenario.telemetry) :]

    def peer_component(self, scenario: Scenario) -> np.ndarray | None:
        """(time, point) |peer z| of a scenario (0 for points without peers), or None when off."""
        if not getattr(self, "peers", False):
            return None
        telemetry = self._with_history(scenario)
        z = peer_scores(telemetry, scenario.points)
        return np.abs(z[len(telemetry) - len(scenario.telemetry) :])

    def features(self, scenario: Scenario) -> tuple[np.ndarray, pd.DataFrame | None]:
        """(time, point, FEATURES) of a scenario, and the physics per-step frame (None without physics).
        Features see the preceding split's telemetry as history when there is one (`history`)."""
        residuals, steps = None, None
        if self.physics:
            detector = PhysicsDetector(network=scenario.network(), points=scenario.points).fit(scenario.telemetry)
            residuals, steps = detector.residual_frame(scenario.telemetry)
        telemetry = self._with_history(scenario)
        feats = point_features(telemetry, scenario.points, residuals=residuals)
        return feats[len(telemetry) - len(scenario.telemetry) :], steps

    def _default_floors(self) -> dict[str, float]:
        base = {
            "z_recent": 6.0,
            "z_daily": 8.0,
            "z_sustained": 5.0,
            "slope": 6.0,
            "flat_run": 2.0,
            "missing_run": 2.0,
            "zero_run": 2.0,
            "limit": 1.0,
            "resid": 4.0,
            "z_long": 5.0,
            "learned": 0.6,
            # a feeder whose PV units follow other skies than the rest of the fleet's (SimBench
            # gives units different profiles) reaches 5-8 on clean days: below 8 a trip score
            # cried wolf more often than it found a trip on the training grid's tuning sets
            "feeder_short": 8.0,
            "feeder_long": 1.5,
            # the transformer's losses grow with the square of its load, so its two sides part by
            # a few kW on a heavy day: on the training grid's second period 7.4 on clean days
            "peer_voltage": 4.0,
            "peer_trafo": 8.0,
            "peer_current": 4.0,
            "peer_generator": 4.0,
        }
        return {**base, **(self.floors or {})}

    # -- fit ----------------------------------------------------------------------------------------
    def fit(self, scenarios: Sequence[Scenario], progress: Callable[[int, int], Any] | None = None) -> LabPipeline:
        """Learn robust scales, forests and thresholds from the clean samples of `scenarios`."""
        if not scenarios:
            raise ValueError("LabPipeline.fit needs at least one scenario (a directory read with read_scenario)")
        rng = np.random.default_rng(self.random_state)
        total = len(scenarios) + 1
        rows, quantities = [], []
        feeder_rows: list[np.ndarray] = []
        peer_rows: dict[str, list[np.ndarray]] = {}
        per = max(self.max_rows // len(scenarios), 1000)
        for k, scenario in enumerate(scenarios):
            feats, _ = self.features(scenario)
            clean = _clean_mask(scenario, pd.Timedelta(hours=4))
            clean[: samples_per_day(scenario.telemetry.index)] = False  # warm-up: no daily profile yet
            if self.peers:  # a PV unit in daylight is judged by its peers (components): not a row here
                telemetry = self._with_history(scenario)
                sunny = generator_sun_up(telemetry, scenario.points)[len(telemetry) - len(scenario.telemetry) :]
            else:
                sunny = np.zeros_like(clean)
            q = scenario.points.loc[list(scenario.telemetry.columns), "quantity"].to_numpy()
            t_idx, p_idx = np.nonzero(clean & ~sunny)
            if len(t_idx) > per:
                pick = rng.choice(len(t_idx), per, replace=False)
                t_idx, p_idx = t_idx[pick], p_idx[pick]
            rows.append(feats[t_idx, p_idx])
            fed = self.feeder_component(scenario)
            if fed is not None and fed[0]:
                heads, fscores = fed
                where = [list(scenario.telemetry.columns).index(h) for h in heads]
                feeder_rows.append(fscores[clean[:, where]])
            peer = self.peer_component(scenario)
            if peer is not None:
                kinds = peer_kinds(scenario.points, list(scenario.telemetry.columns))
                for kind in set(kinds) - {""}:
                    peer_rows.setdefault(kind, []).append(peer[:, kinds == kind][clean[:, kinds == kind]])
            quantities.append(q[p_idx])
            if progress is not None:
                progress(k + 1, total)
        X = np.concatenate(rows)
        qty = np.concatenate(quantities)
        self.temporal_ = TemporalDetector(contamination="auto").fit(X)
        z = self.temporal_.robust_z(X)
        floors = self._default_floors()
        # a component's threshold: margin × its clean quantile, at least its floor and at most
        # `cap` × the floor (an unlabelled fault left in the training data must not blind it)
        self.thresholds_ = {
            name: float(
                np.clip(self.margin * np.quantile(z[:, j], self.quantile), floors[name], self.cap * floors[name])
            )
            for j, name in enumerate(FEATURES)
        }
        # the feeder detector's thresholds, the same way (one-sided scores, ≥ 0)
        self.feeder_thresholds_ = {}
        if feeder_rows:
            fx = np.concatenate(feeder_rows)
            self.feeder_thresholds_ = {
                name: float(
                    np.clip(self.margin * np.quantile(fx[:, j], self.quantile), floors[name], self.cap * floors[name])
                )
                for j, name in enumerate(FEEDER_SCORES)
            }
        # the peer detector's, one per kind of comparison (voltages, transformer sides, currents)
        self.peer_thresholds_ = {}
        for kind, blocks in sorted(peer_rows.items()):
            values = np.concatenate(blocks)
            if len(values):
                floor = floors[f"peer_{kind}"]
                self.peer_thresholds_[kind] = float(
                    np.clip(self.margin * np.quantile(values, self.quantile), floor, self.cap * floor)
                )
        self.learned_ = {}
        self.learned_thresholds_ = {}
        if self.learned_weight > 0:
            for quantity in sorted(set(qty)):
                sel = qty == quantity
                model = LearnedDetector(n_estimators=self.n_estimators, random_state=self.random_state).fit(X[sel])
                anomaly = -model.score_samples(X[sel])
                self.learned_[quantity] = model
                self.learned_thresholds_[quantity] = float(
                    np.clip(self.margin * np.quantile(anomaly, self.quantile), floors["learned"], 0.95)
                )
        self.n_training_rows_ = len(X)
        if progress is not None:
            progress(total, total)
        return self

    # -- scoring ------------------------------------------------------------------------------------
    def components(
        self, scenario: Scenario, extra: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, np.ndarray, pd.DataFrame | None]:
        """(time, point, component) scores normalised by their thresholds (≥ 1: abnormal; after the
        features come the forest's, the feeder detector's and the peers', 0 where they do not apply), the signed
        features, and the physics per-step frame. `extra`, when given, receives which fault type
        the feeder detector points to (`feeder_where`, `feeder_kind`)."""
        feats, steps = self.features(scenario)
        n_t, n_p, n_f = feats.shape
        flat = feats.reshape(-1, n_f)
        z = self.temporal_.robust_z(flat).reshape(n_t, n_p, n_f)
        thresholds = np.array([self.thresholds_[name] for name in FEATURES])
        comps = np.zeros((n_t, n_p, n_f + 3))  # + the forest's, the feeder detector's and the peers'
        comps[..., :n_f] = z / thresholds
        # a jump several meters see at once is the grid moving (a load step), not a lying meter:
        # the step component counts only when at most `together - 1` points of its kind jump at
        # that sample (one other may jump by chance among dozens of meters)
        kind_of = scenario.points.loc[list(scenario.telemetry.columns), "quantity"].map(_MOVE_GROUP).to_numpy()
        jumps = comps[..., F["z_recent"]] >= 0.5
        for group in set(kind_of):
            cols = np.flatnonzero(kind_of == group)
            together = jumps[:, cols].sum(axis=1) >= 3
            comps[together[:, None] & np.isin(np.arange(n_p), cols)[None, :], F["z_recent"]] *= 0.0
        # flows that leave their daily profile together are the grid moving (clouds over a PV-rich
        # grid, a hot afternoon), not a lying meter: a meter's bias or drift is its own. Grid
        # events are named by what only they do (voltages of a dead feeder, the feeder detector's
        # net load, the oil temperature), not by the flows' profiles
        moving = np.zeros((n_t, n_p), dtype=bool)
        flows = np.flatnonzero(kind_of == "flow")
        if getattr(self, "moving_together", 0) and len(flows) >= self.moving_together:
            profile = [F[name] for name in _PROFILE_FEATURES]
            left = comps[:, flows][..., profile].max(axis=-1) >= 0.5
            together = left.sum(axis=1) >= self.moving_together
            moving[np.ix_(together, flows)] = True
            for j in profile:
                comps[..., j] = np.where(moving, 0.0, comps[..., j])
        if self.learned_weight > 0 and self.learned_:
            q = scenario.points.loc[list(scenario.telemetry.columns), "quantity"].to_numpy()
            for quantity in sorted(set(q)):
                model = self.learned_.get(quantity)
                if model is None:  # a quantity never seen in training: the closest physical kin
                    continue
                cols = np.flatnonzero(q == quantity)
                # the forest scores only candidate rows (some statistic at ≥ `learned_screen` of its
                # threshold); the rest sit deep inside the clean cloud, and skipping them keeps
                # scoring above 100,000 point-samples/s
                candidate = comps[:, cols, :n_f].max(axis=-1) >= self.learned_screen
                if candidate.any():
                    anomaly = -model.score_samples(feats[:, cols][candidate])
                    block = np.zeros((n_t, len(cols)))
                    block[candidate] = self.learned_weight * anomaly / self.learned_thresholds_[quantity]
                    comps[:, cols, n_f] = block
            comps[..., n_f] = np.where(moving, 0.0, comps[..., n_f])  # the forest sees the same profiles
        fed = self.feeder_component(scenario) if getattr(self, "feeder_thresholds_", None) else None
        if fed is not None and fed[0]:
            heads, fscores = fed
            where = [list(scenario.telemetry.columns).index(h) for h in heads]
            limits = np.array([self.feeder_thresholds_[name] for name in FEEDER_SCORES])
            comps[:, where, n_f + 1] = (fscores / limits).max(axis=-1)
            if extra is not None:  # which feeder score carried it: a slow shift is a theft, else a trip
                extra["feeder_where"] = where
                extra["feeder_kind"] = np.where(
                    fscores[..., 1] / limits[1] >= fscores[..., 0] / limits[0], "theft", "pv_trip"
                )
        peer = self.peer_component(scenario) if getattr(self, "peer_thresholds_", None) else None
        if peer is not None:
            kinds = peer_kinds(scenario.points, list(scenario.telemetry.columns))
            for kind, limit in self.peer_thresholds_.items():
                comps[:, kinds == kind, n_f + 2] = peer[:, kinds == kind] / limit
            # a trip or a lying meter is one unit; several units apart from the fleet at once is
            # the grid (a feeder's PV surplus) or the weather (a cloud over one part of the grid)
            gens = np.flatnonzero(kinds == "generator")
            if len(gens):
                together = (comps[:, gens, n_f + 2] >= 0.5).sum(axis=1) >= 2
                comps[together[:, None] & np.isin(np.arange(n_p), gens)[None, :], n_f + 2] = 0.0
            if "generator" in self.peer_thresholds_:
                # while the sun is up a generator's own history is the weather's: its level is
                # judged against its peers only (a stuck or missing meter is still its own)
                telemetry = self._with_history(scenario)
                sun_up = generator_sun_up(telemetry, scenario.points)[len(telemetry) - n_t :]
                for name in _WEATHER_MOVED:
                    comps[..., F[name]] = np.where(sun_up, 0.0, comps[..., F[name]])
                comps[..., n_f] = np.where(sun_up, 0.0, comps[..., n_f])
        return comps, feats, steps

    def _kinds(
        self, comps: np.ndarray, feats: np.ndarray, quantity: np.ndarray, element_type: np.ndarray
    ) -> np.ndarray:
        """Fault type per (time, point) from the dominant statistical component and the quantity."""
        n_f = len(FEATURES)
        dominant = np.argmax(comps[..., :n_f], axis=-1)
        names = np.array([_KIND_OF_FEATURE[f] for f in FEATURES], dtype=object)
        kinds = names[dominant]
        shift = feats[..., F["z_daily"]]
        transient = comps[..., F["z_sustained"]] < 1.0  # a deviation that has not lasted
        kinds = np.where(np.isin(kinds, ["spike", "bias"]), np.where(transient, "spike", "bias"), kinds)
        kinds = np.where(np.isin(dominant, [F["z_sustained"], F["z_long"]]), "bias", kinds)
        persistent = kinds == "bias"
        volt = (quantity == "v_pu")[None, :]
        temp = (quantity == "temp_oil_c")[None, :]
        sgen = (element_type == "sgen")[None, :]
        load = (element_type == "load")[None, :]
        kinds = np.where((kinds == "overvoltage") & temp, "overheating", kinds)
        kinds = np.where((kinds == "overvoltage") & volt & (shift < 0), "bias", kinds)
        kinds = np.where(persistent & temp & (shift > 0), "overheating", kinds)
        kinds = np.where(persistent & volt & (shift > 0) & (feats[..., F["limit"]] > 0), "overvoltage", kinds)
        kinds = np.where(persistent & sgen & (shift < 0), "pv_trip", kinds)
        kinds = np.where(persistent & load & (shift > 0), "theft", kinds)
        return kinds

    def scores(self, scenario: Scenario) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
        """(time × point combined score, time × point fault type, physics per-step frame)."""
        if not hasattr(self, "temporal_"):
            raise ValueError("LabPipeline is not fitted; call fit(scenarios) or load a trained model")
        extra: dict[str, Any] = {}
        comps, feats, steps = self.components(scenario, extra)
        cols = list(scenario.telemetry.columns)
        pts = scenario.points.loc[cols]
        combined = np.nanmax(comps, axis=-1)
        kinds = self._kinds(comps, feats, pts.quantity.to_numpy(), pts.element_type.to_numpy())
        n_f = len(FEATURES)
        if "feeder_where" in extra:
            # where the feeder detector carries the score, the event is a PV trip or a theft
            where = extra["feeder_where"]
            wins = comps[:, where, n_f + 1] >= comps[:, where, : n_f + 1].max(axis=-1)
            kinds[:, where] = np.where(wins, extra["feeder_kind"], kinds[:, where])
        # where the peers carry it, a meter disagrees with its peers for a while: a bias (a drift
        # when its deviation is still growing)
        peer_wins = comps[..., n_f + 2] > comps[..., : n_f + 2].max(axis=-1)
        growing = comps[..., F["slope"]] >= 0.5
        kinds = np.where(peer_wins, np.where(growing, "drift", "bias"), kinds)
        # a generator producing less than the others' sky allows: a trip (a lying meter cannot be
        # told from one with this metering; the alarm names the unit either way)
        short = (pts.element_type.to_numpy() == "sgen")[None, :] & (feats[..., F["z_daily"]] < 0)
        kinds = np.where(peer_wins & short, "pv_trip", kinds)
        index = scenario.telemetry.index
        return (
            pd.DataFrame(combined, index=index, columns=cols),
            pd.DataFrame(kinds, index=index, columns=cols),
            steps,
        )

    def detect(self, scenario: Scenario) -> pd.DataFrame:
        """Alarm events of a scenario: ALARMS_COLUMNS (score: peak, higher = more anomalous) plus
        `contributing` (the top measurements during the event)."""
        score, kinds, _ = self.scores(scenario)
        pts = scenario.points.loc[list(score.columns)]
        targets = pd.DataFrame(
            {"point": pts.index, "element_type": pts.element_type.to_numpy(), "element": pts.element.to_numpy()},
            index=pts.index,
        )
        rule = Hysteresis(self.high, self.low, self.on_delay, self.off_delay)
        return combine(score, rule, targets=targets, kinds=kinds, contributions=score)
