"""Live scoring: the deployed lab model scores the site's telemetry each detector cycle.

The gateway's points are mapped onto the interchange format the lab's models read (the
measurement mapping the twin uses: device → network element, measurand → `v_pu`, `p_mw`,
`q_mvar`, `i_ka`, `temp_oil_c`, σ from the meter's accuracy class), so a model trained on
scenario directories scores the live site unchanged. A rolling window of samples, one per
detector cycle (the last reading of each point in the cycle; none: a missing sample), is read
from the historian incrementally, together with the twin's normalised residuals of the same
points, and scored with the deployed model (`anomaly.registry`, `anomaly.pipeline.LabPipeline`).

Scores become alarm conditions with the model's own combiner (its on/off delays and hysteresis,
`anomaly.events`): a point raises a `model` alarm while its event is open, naming the type, the
score and the top contributing measurements. A point must have `anomaly.model_warmup` samples
in the window before it may alarm (no alarm storm at start-up); until then the status says it is
warming up (`/health`, the analyst page), never a believable "all clear".
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from anomaly.dataset import QUANTITY_UNITS, Scenario
from anomaly.events import Hysteresis, combine
from anomaly.features import F, point_features
from gateway.config import DataType
from gridverse.config import Settings
from gridverse.elements import ElementKind, ElementRef, Measurand
from gridverse.historian import Historian
from gridverse.points import TELEMETRY, Record
from gridverse.schema import TWIN_RESIDUAL, Alarm, Severity

log = logging.getLogger(__name__)

MODEL_RULE = "model"
LIVE_STATUS = "anomaly_live"  # historian measurement of live scoring's status (for the UI)
#: the oil-temperature sensor's point and its σ in °C (as the scenario generator draws it)
OIL_POINT, OIL_SIGMA_C = "YPTR1.TmpOil", 0.5
OIL_RESOLUTION_C, OIL_NOISE_C = 0.001, 0.05  # the sensor publishes 3 decimals; its noise σ at ~30 °C
#: how rare a run of equal readings of a steady, quantised point must be to count as "stuck"
#: as surely as the model's own run threshold counts it on a point that never repeats
P_STEADY_RUN = 1e-6
RUN_CAP = 8  # repeats of one earlier run that count towards how often a point repeats
#: the shortest time a value must stand still to count as stuck live: a model trained on
#: 15-minute samples counts runs in its samples, but two polls a few seconds apart may well read
#: a device whose value has not been refreshed yet
MIN_STUCK_S = 10.0
#: measurand → (interchange quantity, factor from the point's SI unit)
_QUANTITY = {
    Measurand.P: ("p_mw", 1e-6),
    Measurand.Q: ("q_mvar", 1e-6),
    Measurand.I: ("i_ka", 1e-3),
    Measurand.V: ("v_pu", None),  # V → pu by the end bus's nominal voltage
}
#: how often a failed model load is retried
RETRY_LOAD_S = 60.0


@dataclass(frozen=True)
class LivePoint:
    """One gateway point as the lab sees it."""

    name: str  # "device/point": the interchange point name
    substation: str
    device: str
    point: str
    element_type: str
    element: int
    side: str
    quantity: str
    factor: float  # interchange value = SI value × factor
    accuracy_class: float | None  # None: a fixed σ (oil temperature)
    resolution: float = 0.0  # the smallest step the value can take (interchange unit); 0: continuous


def _end_bus(net: Any, element: ElementRef) -> int:
    if element.kind == ElementKind.BUS:
        return element.index
    table = net.line if element.kind == ElementKind.LINE else net.trafo
    side = element.side or ("from" if element.kind == ElementKind.LINE else "lv")
    return int(table.at[element.index, f"{side}_bus"])


def live_points(settings: Settings, net: Any) -> list[LivePoint]:
    """The site's analogue points that map onto interchange quantities (the twin's mapping)."""
    out: list[LivePoint] = []
    for sub in settings.site.substations:
        for dev in sub.devices:
            element = dev.element
            if element is None or element.kind == ElementKind.SWITCH:
                continue
            for p in settings.profiles[dev.profile].points:
                if p.measurand not in _QUANTITY:
                    continue
                quantity, factor = _QUANTITY[p.measurand]
                integer = p.type not in (DataType.F32, DataType.F64) and p.scale_register is None
                if p.measurand == Measurand.V:
                    bus = _end_bus(net, element)
                    target: tuple[str, int, str] = ("bus", bus, "")
                    factor = 1.0 / (float(net.bus.at[bus, "vn_kv"]) * 1e3)
                elif element.kind == ElementKind.BUS:
                    if p.measurand == Measurand.I:
                        continue  # a current at a bus is no network measurement
                    target = ("bus", element.index, "")
                else:
                    side = element.side or ("from" if element.kind == ElementKind.LINE else "lv")
                    target = (element.kind.value, element.index, side)
                factor = float(factor or 1.0)
                resolution = abs(p.scale * factor) if integer else 0.0
                out.append(
                    LivePoint(
                        f"{dev.name}/{p.name}",
                        sub.name,
                        dev.name,
                        p.name,
                        *target,
                        quantity,
                        factor,
                        dev.accuracy_class,
                        resolution,
                    )
                )
    for sensor in settings.site.sensors:
        if sensor.element.kind == ElementKind.TRAFO:
            out.append(
                LivePoint(
                    f"{sensor.name}/{OIL_POINT}",
                    sensor.substation,
                    sensor.name,
                    OIL_POINT,
                    "trafo",
                    sensor.element.index,
                    "",
                    "temp_oil_c",
                    1.0,
                    None,
                    OIL_RESOLUTION_C,
                )
            )
    return out


def _sigmas(points: list[LivePoint], telemetry: pd.DataFrame, settings: Settings) -> np.ndarray:
    """σ per point in its interchange unit: the meter's accuracy class at the point's typical
    magnitude in the window (as the scenario generator gives it), the twin's floors."""
    from gridmodel.measurements import measurement_sigma

    typical = np.nan_to_num(np.nanmedian(np.abs(telemetry.to_numpy(dtype=float)), axis=0), nan=0.0)
    out = np.empty(len(points))
    kinds = {"v_pu": "v", "p_mw": "p", "q_mvar": "q", "i_ka": "i"}
    for i, p in enumerate(points):
        if p.accuracy_class is None:
            out[i] = OIL_SIGMA_C
        else:
            out[i] = measurement_sigma(kinds[p.quantity], float(typical[i]), p.accuracy_class, settings.twin)
    return out


@dataclass
class LiveStatus:
    """What live scoring is doing, for `/health` and the analyst page."""

    state: str = "starting"  # disabled, waiting, loading, failed, warming_up, scoring
    model: str | None = None
    samples: int = 0
    warmup: int = 0
    points: int = 0
    scoring: int = 0  # points past their warm-up
    active: list[str] = field(default_factory=list)
    message: str = ""
    warning: str = ""
    failures: int = 0
    last_scored_ns: int | None = None
    score_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


class LiveScorer:
    """The model part of the detector service: `conditions(now_ns)` each cycle."""

    def __init__(
        self,
        settings: Settings,
        historian: Historian,
        *,
        net: Any = None,
        step_s: float | None = None,
        registry: Any = None,
    ) -> None:
        from anomaly.registry import ModelRegistry

        self.settings = settings
        self.config = settings.anomaly
        self.historian = historian
        self.registry = registry or ModelRegistry(self.config.models_dir)
        self.step_ns = int((step_s or max(settings.twin.interval_s, settings.gateway.poll_interval_s)) * 1e9)
        self.window = self.config.model_window
        self.warmup = self.config.model_warmup
        self.status = LiveStatus(warmup=self.warmup)
        self._net = net
        self._points: list[LivePoint] | None = None
        self._by_series: dict[tuple[str, str], int] = {}
        self._buckets: dict[int, dict[int, float]] = {}  # bucket → {point column: value}
        self._resid: dict[int, dict[int, float]] = {}  # bucket → {point column: normalised residual}
        self._read_from_ns: int | None = None
        self._model: Any = None
        self._ref: str | None = None
        self._next_load = 0.0
        self._failing = False
        self._loader: threading.Thread | None = None
        self._published: tuple[Any, ...] | None = None
        self._published_ns = 0
        if not self.config.model_enabled:
            self.status.state = "disabled"
            self.status.message = "live scoring is off (anomaly.model_enabled: false)"

    # -- set-up -----------------------------------------------------------------------------------
    def points(self) -> list[LivePoint]:
        """The live points (loads the network on first use when none was given)."""
        if self._points is None:
            if self._net is None:
                from gridmodel.network import load_grid

                self._net = load_grid(self.settings.site.network).net
            points = live_points(self.settings, self._net)
            self._by_series = {(p.device, p.point): i for i, p in enumerate(points)}
            self.status.points = len(points)
            self._points = points
        return self._points

    def _ready(self, now_ns: int) -> bool:
        """True once the points are mapped. The network is loaded in a thread of its own (a
        SimBench grid takes tens of seconds on a busy machine; the rule detectors must not wait)."""
        if self._points is not None:
            return True
        if self._net is not None:
            self.points()
            return True
        if self._loader is None and not self._has_telemetry(now_ns):
            self.status.state, self.status.message = "waiting", "no telemetry of this site yet: nothing to score"
            return False
        if self._loader is None or (not self._loader.is_alive() and time.monotonic() >= self._next_load):

            def load() -> None:
                try:
                    self.points()
                except Exception as exc:  # reported in the status, retried after RETRY_LOAD_S
                    self._next_load = time.monotonic() + RETRY_LOAD_S
                    self.status.state = "failed"
                    self.status.message = f"live scoring cannot map the site's points: {exc}"
                    log.error("%s (retrying in %.0f s)", self.status.message, RETRY_LOAD_S)

            self.status.state, self.status.message = "loading", "loading the network to map the live points"
            self._loader = threading.Thread(target=load, name="live-model-load", daemon=True)
            self._loader.start()
        return False

    def _has_telemetry(self, now_ns: int) -> bool:
        """Whether the window holds any telemetry of the site (then the network is worth loading)."""
        start = now_ns - self.window * self.step_ns
        return bool(self.historian.query(TELEMETRY, tags={"site": self.settings.site.name}, start_ns=start, limit=1))

    def _wanted_ref(self) -> str | None:
        return None if self.config.model == "deployed" else self.config.model

    def _ensure_model(self) -> bool:
        """Load the configured (or the newly deployed) model; False while there is none."""
        wanted = self._wanted_ref()
        ref = wanted or self.registry.deployed_ref() or "shipped default"
        if self._model is not None and ref == self._ref:
            return True
        if self._model is not None and ref != self._ref:
            log.info("live scoring: %s is deployed now (was %s); loading it", ref, self._ref)
        elif time.monotonic() < self._next_load:
            return False
        self.status.state = "loading"
        caught: list[warnings.WarningMessage] = []
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model, card = self.registry.load(wanted)
        except Exception as exc:
            self._next_load = time.monotonic() + RETRY_LOAD_S
            message = f"live scoring has no model: {exc}"
            if self.status.message != message:
                log.error("%s (retrying every %.0f s)", message, RETRY_LOAD_S)
            self.status.state, self.status.message = "failed", message
            self._model = None
            return False
        if not hasattr(model, "scores"):
            self._next_load = time.monotonic() + RETRY_LOAD_S
            message = (
                f"model {card.ref} cannot score live data (it has no `scores`, so it is no LabPipeline); "
                "deploy a model trained with gridverse anomaly train"
            )
            log.error("%s", message)
            self.status.state, self.status.message = "failed", message
            return False
        self._model, self._ref = _live_pipeline(model, self.window), ref
        self.status.model = card.ref
        self.status.warning = "; ".join(str(w.message) for w in caught)
        self.status.message = ""
        log.info("live scoring with model %s (%d points)", card.ref, len(self.points()))
        return True

    # -- the window -------------------------------------------------------------------------------
    def _read(self, now_ns: int) -> None:
        """Read what arrived since the last cycle (the whole window on the first) into buckets."""
        self.points()
        site = {"site": self.settings.site.name}
        start = self._read_from_ns
        if start is None:
            start = (now_ns // self.step_ns - self.window - 1) * self.step_ns
        for r in self.historian.query(TELEMETRY, tags=site, start_ns=start, end_ns=now_ns):
            col = self._by_series.get((r.tags.get("device", ""), r.tags.get("point", "")))
            if col is None:
                continue
            value = r.fields.get("value")
            bucket = self._buckets.setdefault(r.time_ns // self.step_ns, {})
            if value is None or r.fields.get("quality", "good") != "good":
                bucket.setdefault(col, np.nan)  # a bad reading: missing, unless a good one came too
            else:
                bucket[col] = float(value) * self._points[col].factor  # type: ignore[index]
        for r in self.historian.query(TWIN_RESIDUAL, tags=site, start_ns=start, end_ns=now_ns):
            col = self._by_series.get((r.tags.get("device", ""), r.tags.get("point", "")))
            value = r.fields.get("normalised", r.fields.get("residual_sigma"))
            if col is not None and value is not None:
                self._resid.setdefault(r.time_ns // self.step_ns, {})[col] = abs(float(value))
        # the next read starts at the first bucket not settled yet (late rows land in it)
        self._read_from_ns = (now_ns // self.step_ns - 1) * self.step_ns
        oldest = now_ns // self.step_ns - self.window - 2
        for store in (self._buckets, self._resid):
            for b in [b for b in store if b < oldest]:
                del store[b]

    def frame(self, now_ns: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(telemetry, residuals): the settled window, one row per cycle, interchange units,
        columns = interchange point names; a cycle without a reading of a point is NaN."""
        points = self.points()
        last = now_ns // self.step_ns - 2  # the newest bucket that ended a full cycle ago
        first = max(last - self.window + 1, min(self._buckets, default=last))
        rows = np.arange(first, last + 1)
        values = np.full((len(rows), len(points)), np.nan)
        resid = np.full((len(rows), len(points)), np.nan)
        for i, b in enumerate(rows):
            for col, v in self._buckets.get(int(b), {}).items():
                values[i, col] = v
            for col, v in self._resid.get(int(b), {}).items():
                resid[i, col] = v
        index = pd.DatetimeIndex(pd.to_datetime(rows * self.step_ns, utc=True, unit="ns"))
        names = [p.name for p in points]
        return pd.DataFrame(values, index=index, columns=names), pd.DataFrame(resid, index=index, columns=names)

    # -- scoring ----------------------------------------------------------------------------------
    def conditions(self, now_ns: int | None = None) -> list[Alarm]:
        """The model's alarm conditions now (one per point whose event is open). Never raises:
        a failure is logged once, counted in the status, and logged again on recovery."""
        if not self.config.model_enabled:
            return []
        now_ns = time.time_ns() if now_ns is None else now_ns
        try:
            if not self._ready(now_ns) or not self._ensure_model():
                self._publish(now_ns)
                return []
            self._read(now_ns)
            out = self._score(now_ns)
            self._publish(now_ns)
        except Exception as exc:
            self.status.failures += 1
            message = f"{type(exc).__name__}: {exc}"[:300]
            if "features" in str(exc):  # a model fitted on another version of the lab's feature set
                message += f"; model {self.status.model} predates the lab's features now: retrain and deploy it"
            self.status.state, self.status.message = "failed", message
            if not self._failing:
                log.exception("live scoring failed (the rule detectors go on; retried each cycle)")
            self._failing = True
            self._publish(now_ns)
            return []
        if self._failing:
            log.info("live scoring recovered after %d failure(s)", self.status.failures)
            self._failing = False
        return out

    def _publish(self, now_ns: int) -> None:
        """Store the status in the historian (`anomaly_live`) when it changes, and once a minute,
        so the UI process can say what live scoring does (warming up, scoring, failed)."""
        st = self.status
        key = (st.state, st.model, st.scoring, tuple(st.active), st.warning, st.state == "failed" and st.message)
        if key == self._published and now_ns - self._published_ns < 60e9:
            return
        fields: dict[str, float | int | str | bool] = {
            "state": st.state,
            "model": st.model or "",
            "message": st.message,
            "samples": st.samples,
            "warmup": st.warmup,
            "scoring": st.scoring,
            "points": st.points,
            "active": "; ".join(st.active),
            "warning": st.warning,
        }
        try:
            self.historian.write([Record(LIVE_STATUS, {"site": self.settings.site.name}, fields, now_ns)])
        except Exception as exc:  # the status is a courtesy to the UI: never a reason to stop scoring
            log.debug("live scoring status not stored: %s", exc)
            return
        self._published, self._published_ns = key, now_ns

    def _score(self, now_ns: int) -> list[Alarm]:
        telemetry, residuals = self.frame(now_ns)
        seen = telemetry.notna().any().to_numpy()
        telemetry, residuals = telemetry.loc[:, seen], residuals.loc[:, seen]
        points = [p for p, s in zip(self.points(), seen, strict=True) if s]
        valid = telemetry.notna().cumsum().to_numpy()
        status = self.status
        status.samples = int(valid.max(initial=0))
        status.scoring = int((valid[-1] >= self.warmup).sum()) if len(valid) else 0
        status.active = []
        if not status.scoring:
            status.state = "warming_up"
            status.message = (
                f"warming up: {status.samples} of {self.warmup} samples (one per "
                f"{self.step_ns / 1e9:g} s) before the model may alarm"
            )
            return []
        started = time.perf_counter()
        table = pd.DataFrame(
            {
                "element_type": [p.element_type for p in points],
                "element": [p.element for p in points],
                "side": [p.side for p in points],
                "quantity": [p.quantity for p in points],
                "unit": [QUANTITY_UNITS[p.quantity] for p in points],
                "sigma": _sigmas(points, telemetry, self.settings),
            },
            index=pd.Index([p.name for p in points], name="point"),
        )
        typical = np.nan_to_num(np.nanmedian(np.abs(telemetry.to_numpy(dtype=float)), axis=0), nan=0.0)
        noise = np.array([(p.accuracy_class or 0.0) / 300.0 for p in points]) * typical  # class = 3σ in %
        noise = np.where([p.accuracy_class is None for p in points], OIL_NOISE_C, noise)
        repeat = repeat_chance(np.array([p.resolution for p in points]), noise)
        meta = {"live": True, "residuals": residuals, "repeat": repeat, "step_s": self.step_ns / 1e9}
        scenario = Scenario(Path("live"), table, telemetry, None, meta)
        model = self._model
        score, kinds, _ = model.scores(scenario)
        values = score.to_numpy(dtype=float)
        values[valid < self.warmup] = np.nan  # a point's first samples have no history to judge by
        score = pd.DataFrame(values, index=score.index, columns=score.columns)
        rule = Hysteresis(model.high, model.low, model.on_delay, model.off_delay)
        targets = pd.DataFrame(
            {"point": table.index, "element_type": table.element_type, "element": table.element}, index=table.index
        )
        events = combine(score, rule, targets=targets, kinds=kinds, contributions=score)
        last = score.index[-1]
        below = np.nan_to_num(values, nan=-np.inf) < rule.low
        tail_below = _tail_run(below)
        out = []
        by_name = {p.name: p for p in points}
        col_of = {name: k for k, name in enumerate(score.columns)}
        for e in events.itertuples():
            if e.end != last or tail_below[col_of[e.point]] >= rule.off_delay:
                continue  # the event has cleared
            p = by_name[e.point]
            now_score = values[-1, col_of[e.point]]
            contributing = ", ".join(str(c) for c in str(e.contributing).split(";") if c)
            message = (
                f"{e.type} on {p.name} (model {status.model}): score {e.score:.2f} (now {now_score:.2f}, "
                f"alarm at ≥ {rule.high:g}); top contributing: {contributing or p.name}"
            )
            out.append(Alarm(MODEL_RULE, p.substation, p.device, p.point, Severity.WARNING, message, float(e.score)))
            status.active.append(f"{p.name}: {e.type}")
        status.state = "scoring"
        status.message = f"scoring {status.scoring} of {status.points} points, {len(out)} in alarm"
        status.last_scored_ns = now_ns
        status.score_s = round(time.perf_counter() - started, 4)
        return out


def _tail_run(flag: np.ndarray) -> np.ndarray:
    """Per column: how many rows in a row at the end have `flag` set."""
    if not len(flag):
        return np.zeros(flag.shape[1] if flag.ndim == 2 else 0, dtype=int)
    not_set = ~flag[::-1]
    first = np.argmax(not_set, axis=0)
    return np.where(not_set.any(axis=0), first, len(flag))


def repeat_chance(resolution: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Chance that a steady point's quantised reading equals the one before: 1 − E|Δnoise|/step
    (two readings with noise σ differ by 2σ/√π on average); 0 for a continuous point."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(resolution > 0, 1.0 - (2.0 * noise / np.sqrt(np.pi)) / resolution, 0.0)
    return np.clip(np.nan_to_num(r), 0.0, 1.0)


def equal_runs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(run, repeat, started) per (time, point) over the readings received: `run` counts the
    readings in a row equal to the one received before (a cycle without a reading neither breaks
    nor extends it: a late poll is no evidence that the value moved), `repeat` marks a reading equal
    to the one before, `started` is the row where the current run began (-1: before the window)."""
    valid = ~np.isnan(x)
    previous = pd.DataFrame(x).ffill().shift(1).to_numpy()  # the last reading before each row
    repeat = valid & (x == previous)
    reset = valid & ~repeat
    count = np.cumsum(repeat, axis=0)
    rows = np.arange(len(x))[:, None]
    started = np.maximum.accumulate(np.where(reset, rows, -1), axis=0)
    at_start = np.where(started >= 0, np.take_along_axis(count, np.clip(started, 0, None), axis=0), 0)
    return (count - at_start).astype(float), repeat, started


def _run_weight(
    x: np.ndarray, repeat: np.ndarray, started: np.ndarray, theory: np.ndarray, threshold: float, min_run: float
) -> np.ndarray:
    """(time, point) factor for the flat-run feature (see `live_features`). How often a point
    repeats is counted before its current run, each earlier run counting at most RUN_CAP repeats
    (so an earlier stuck episode does not teach the point that standing still is normal)."""
    valid = ~np.isnan(x)
    pair = valid & (np.cumsum(valid, axis=0) > 1)  # a reading with one received before it
    run_so_far, _, _ = equal_runs(x)
    counted = repeat & (run_so_far <= RUN_CAP)
    n_pairs, n_equal = np.cumsum(pair, axis=0), np.cumsum(counted, axis=0)
    at = np.clip(started, 0, None)
    pairs_before = np.where(started >= 0, np.take_along_axis(n_pairs, at, axis=0), 0)
    equal_before = np.where(started >= 0, np.take_along_axis(n_equal, at, axis=0), 0)
    seen = np.where(pairs_before >= 8, equal_before / np.maximum(pairs_before, 1), 0.0)
    r = np.clip(np.fmax(theory[None, :], seen), 1e-12, 0.999)
    rare_run = np.log(1.0 / P_STEADY_RUN) / np.log(1.0 / r)  # the run a steady point reaches with P_STEADY_RUN
    return np.minimum(1.0, threshold / np.fmax(rare_run, min_run))


def live_features(scenario: Scenario, window: int, flat: float = 4.0) -> np.ndarray:
    """The lab's per-point features of a live window (time, point, FEATURES), adapted to live sampling.

    - The robust step scale is taken over the window, not over a day: `point_features` takes its
      scales over `samples_per_day` rows, which at one sample per cycle is 43,200 rows, so in a
      window of minutes it would fall back to the meter's σ and call every ramp a spike. The
      frame is handed over with a regular index whose "day" is the window (the daily-profile
      features stay off: a window of minutes holds no earlier day). The scale is re-estimated at
      every row: held for an eighth of the window, as over a day, the rows before its first
      estimate would be judged on the meter's σ alone (a healthy feeder's ramp scored 1.06, a
      spike, in a loaded end-to-end run).
    - A run of equal readings is counted over the readings received (a cycle without one does not
      end it) and counts as much as it is rare for that point: a current read at 0.1 A
      on a lightly loaded feeder repeats for several cycles in a steady grid (the rule detectors'
      stuck alarms cried wolf on exactly this). The chance r that a reading equals the one before
      is the larger of what the register's resolution and the meter's σ give (1 − 2σ/(√π·step))
      and how often the point repeated earlier in the window; the run is scaled so that the
      model's run threshold is reached when a steady point would repeat that long with chance
      P_STEADY_RUN, and never before MIN_STUCK_S (polls a few seconds apart may read a value the
      device has not refreshed yet). A point that never repeats keeps the model's threshold
      otherwise (4 samples for the shipped model: 5 cycles of 2 s with the floor)."""
    telemetry = scenario.telemetry
    residuals = scenario.meta.get("residuals")
    index = pd.date_range("2000-01-01", periods=len(telemetry), freq=pd.Timedelta(days=1) / max(window, 8), tz="UTC")
    feats = point_features(
        telemetry.set_axis(index),
        scenario.points,
        residuals=None if residuals is None else residuals.set_axis(index),
        scale_every=1,  # held for an eighth of the window, the first rows' step scale would be the meter's σ
    )
    if len(telemetry):
        x = telemetry.to_numpy(dtype=float)
        run, repeat, started = equal_runs(x)
        theory = np.asarray(scenario.meta.get("repeat", np.zeros(x.shape[1])), dtype=float)
        min_run = np.ceil(MIN_STUCK_S / float(scenario.meta.get("step_s", MIN_STUCK_S)))
        flat_run = run * _run_weight(x, repeat, started, theory, flat, min_run)
        feats[..., F["flat_run"]] = np.where(np.isnan(x), 0.0, flat_run)  # a missing row: missing_run speaks
    return feats


def _live_pipeline(model: Any, window: int) -> Any:
    """The loaded LabPipeline with its features computed live (`live_features`): the twin's
    normalised residuals of the window as the `resid` feature (the live twin estimates each
    cycle; no per-step estimator run here) and no split-sibling warm-up (the window is the history)."""
    from anomaly.pipeline import LabPipeline

    if not isinstance(model, LabPipeline):
        return model

    class _Live(type(model)):  # type: ignore[misc]
        def features(self, scenario: Scenario) -> tuple[np.ndarray, None]:
            j = F["flat_run"]
            flat = float(self.thresholds_["flat_run"] * self.temporal_.scale_[j] + self.temporal_.center_[j])
            return live_features(scenario, window, flat), None

        # the feeder and peer detectors compare each point with the same time on earlier days,
        # which a live window of minutes does not hold: off live (the offline lab runs them)
        def feeder_component(self, scenario: Scenario) -> None:
            return None

        def peer_component(self, scenario: Scenario) -> None:
            return None

    live = _Live.__new__(_Live)
    live.__dict__.update(model.__dict__)
    return live
