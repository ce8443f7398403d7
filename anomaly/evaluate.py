"""Event-level evaluation of alarms against labelled fault windows (never point-adjusted F1).

Rules, in order:

1. **Alarm events.** Alarm rows are merged into alarm events per thing they name: the point if
   the row names one, else the element (`element_type`, `element`). Rows of one name whose
   windows overlap or are at most `merge_gap_samples` samples apart form one event. A row naming
   neither point nor element is an alarm event of its own that can never match: a false alarm.
2. **Matching.** A label is *found* when an alarm event that *sees* it overlaps its window
   extended by the grace period (`grace_samples` samples after its end). An alarm event that
   finds no label is a false alarm event. One alarm event may find several labels.
3. **What sees a label** (the topology rule, from `network.json` and `points.csv`):

   - a measurement fault (a label naming a point: stuck, drift, spike, dropout, bias): the
     faulty point, or its element;
   - a false-data injection whose label names the points it falsified (`;`-separated in the
     `point` column): any of those points;
   - a line outage: the line, and every point on its *feeder* (the buses reached from the line
     through lines and closed bus-bus switches without passing a transformer's bus, with the
     lines, loads and generators on them) and every transformer's points (the substation sees
     the flow change);
   - transformer overheating: the transformer and its points;
   - overvoltage: the element, every voltage point and every generator point in its voltage
     zone (buses joined without crossing a transformer), and every transformer's points;
   - any other grid event (PV inverter trip, theft at a load, ...): the element, the points on
     its feeder and the transformers' points, as for a line outage;
   - a false-data injection on several points (`fdia`): also every attacked point, when the
     scenario's `scenario.json` fault record lists them (`params.points`).

   Without a network the rule falls back to exact naming (point, or the element of the point),
   and the report says so in `notes`.
4. **Figures.** Event precision (alarm events that found a label / all alarm events), recall
   (labels found / labels), F1; detection delay of each found label (first matching alarm start
   minus label start, at least 0) as median and p90 in samples and seconds; false alarm events
   per day; share of clean time (outside every label window plus grace) covered by an alarm;
   recall by type; localisation (share of found labels whose alarm names the faulty point, or the
   faulty element or a point on it, exactly); EEMUA 191 alarm load: alarm rows raised per 10
   minutes (average and peak), flood windows (10-minute bins with more than 10 raises) and
   chattering alarms (one alarm, same type and name, raised 3 or more times within 1 minute).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from anomaly.dataset import (
    ALARMS_COLUMNS,
    LABELS_COLUMNS,
    LABELS_FILE,
    POINTS_FILE,
    DatasetError,
    Scenario,
    in_network,
)
from anomaly.events import EVENT_TYPES

#: label types that are grid events (the rest, and any label naming a point, are measurement faults)
LINE_OUTAGE = ("line_outage", "outage")
OVERHEATING = ("overheating", "trafo_overheating", "transformer_overheating")
OVERVOLTAGE = ("overvoltage", "pv_overvoltage")
#: every label type the matching rules know by name (others, e.g. a field finding's
#: `inspection.…`, are matched as a grid event on their element, or by the point they name)
KNOWN_TYPES = frozenset(EVENT_TYPES) | set(LINE_OUTAGE) | set(OVERHEATING) | set(OVERVOLTAGE)

Key = tuple[str, Any]  # ("point", name) or ("element", (element_type, element))


@dataclass(frozen=True)
class EvaluationConfig:
    """How alarms and labels are compared; the step is the sampling interval (seconds)."""

    grace_samples: int = 2
    merge_gap_samples: int = 1
    step_s: float = 900.0
    flood_threshold: int = 10  # EEMUA 191: more than 10 alarms in 10 minutes is a flood
    chatter_raises: int = 3  # ISA-18.2 / EEMUA: 3 raises of one alarm within a minute is chattering
    chatter_window_s: float = 60.0


@dataclass
class Report:
    """The evaluation's figures; `to_dict` is the JSON the commands print."""

    labels: int
    found: int
    alarm_events: int
    true_alarm_events: int
    false_alarm_events: int
    precision: float | None
    recall: float | None
    f1: float | None
    median_delay_samples: float | None
    p90_delay_samples: float | None
    median_delay_s: float | None
    p90_delay_s: float | None
    days: float
    false_alarms_per_day: float | None
    clean_time_in_alarm: float | None
    localisation: float | None
    recall_by_type: dict[str, dict[str, Any]]
    alarm_load: dict[str, Any]
    grace_samples: int
    step_s: float
    clean_s: float = 0.0  # seconds of clean time, and of clean time in alarm (for pooling)
    clean_alarm_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    events: pd.DataFrame | None = None  # one row per label: found, delay, exact

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("events")
        return out


def _blank(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)) or str(value) == ""


def label_points(value: Any) -> set[str]:
    """The point(s) a label names: one point, or for a false-data injection the `;`-separated
    points it falsified; empty for a grid event."""
    return set() if _blank(value) else {p.strip() for p in str(value).split(";") if p.strip()}


def _element(element_type: Any, element: Any) -> tuple[str, int] | None:
    if _blank(element_type) or _blank(element):
        return None
    return (str(element_type), int(element))


class Topology:
    """Which points and elements physically see an element, from the network and the point list."""

    def __init__(
        self, net: Any | None, points: pd.DataFrame | None, attacked: dict[tuple[str, str], set[str]] | None = None
    ) -> None:
        self.attacked = attacked or {}  # (type, start ISO) → the points an injection falsified
        self.points = points if points is not None else pd.DataFrame(columns=["element_type", "element", "quantity"])
        self.net = net
        self.point_element: dict[str, tuple[str, int]] = {
            str(p): (str(r.element_type), int(r.element)) for p, r in self.points.iterrows()
        }
        self._adj: dict[int, set[int]] = defaultdict(set)
        self._trafo_buses: set[int] = set()
        if net is not None:
            for _, line in net.line.iterrows():
                if bool(line.in_service) and not self._open_line(int(line.name)):
                    a, b = int(line.from_bus), int(line.to_bus)
                    self._adj[a].add(b)
                    self._adj[b].add(a)
            sw = getattr(net, "switch", None)
            if sw is not None and len(sw):
                for _, s in sw[(sw.et == "b") & sw.closed.astype(bool)].iterrows():
                    a, b = int(s.bus), int(s.element)
                    self._adj[a].add(b)
                    self._adj[b].add(a)
            for table in ("trafo",):
                frame = getattr(net, table)
                self._trafo_buses |= set(frame.hv_bus.astype(int)) | set(frame.lv_bus.astype(int))

    def _open_line(self, line: int) -> bool:
        sw = getattr(self.net, "switch", None)
        if sw is None or not len(sw):
            return False
        mine = sw[(sw.et == "l") & (sw.element == line)]
        return bool(len(mine)) and not bool(mine.closed.astype(bool).all())

    def buses_of(self, element: tuple[str, int]) -> set[int]:
        kind, index = element
        net = self.net
        if net is None:
            return set()
        try:
            if kind == "bus":
                return {index}
            if kind == "line":
                row = net.line.loc[index]
                return {int(row.from_bus), int(row.to_bus)}
            if kind == "trafo":
                row = net.trafo.loc[index]
                return {int(row.hv_bus), int(row.lv_bus)}
            if kind in ("load", "sgen"):
                return {int(getattr(net, kind).loc[index].bus)}
        except KeyError:
            return set()
        return set()

    def _reach(self, start: Iterable[int], stop: set[int]) -> set[int]:
        seen = set(start)
        todo = [b for b in seen if b not in stop]
        while todo:
            b = todo.pop()
            for n in self._adj.get(b, ()):
                if n not in seen:
                    seen.add(n)
                    if n not in stop:
                        todo.append(n)
        return seen

    def feeder(self, element: tuple[str, int]) -> set[int]:
        """The buses of the element's feeder: reached through lines without crossing a transformer bus."""
        start = self.buses_of(element)
        return {b for b in self._reach(start, self._trafo_buses) if b in start or b not in self._trafo_buses}

    def zone(self, element: tuple[str, int]) -> set[int]:
        """The buses of the element's voltage zone (everything joined by lines and bus-bus switches)."""
        return self._reach(self.buses_of(element), set())

    def elements_on(self, buses: set[int]) -> set[tuple[str, int]]:
        net = self.net
        out = {("bus", b) for b in buses}
        if net is None:
            return out
        inner = buses - self._trafo_buses  # a line at the substation busbar alone is another feeder's
        for i, row in net.line.iterrows():
            if int(row.from_bus) in inner or int(row.to_bus) in inner:
                out.add(("line", int(i)))
        for kind in ("load", "sgen"):
            for i, row in getattr(net, kind).iterrows():
                if int(row.bus) in buses:
                    out.add((kind, int(i)))
        return out

    def trafos(self) -> set[tuple[str, int]]:
        return set() if self.net is None else {("trafo", int(i)) for i in self.net.trafo.index}

    def sees(self, label: pd.Series) -> tuple[set[str], set[tuple[str, int]]]:
        """(points, elements) that see the label; an alarm naming any of them may find it."""
        kind = str(label.type)
        target = _element(label.element_type, label.element)
        named = label_points(label.point)
        elements: set[tuple[str, int]] = set()
        points: set[str] = set()
        if len(named) > 1:  # an injection naming the points it falsified: those points, its bus
            points |= named
            if target is not None:
                elements.add(target)
        elif named:  # a measurement fault: the point or its element
            point = next(iter(named))
            points.add(point)
            if point in self.point_element:
                elements.add(self.point_element[point])
            if target is not None:
                elements.add(target)
        elif target is not None:
            elements.add(target)
            if self.net is not None:
                if kind in OVERHEATING:
                    pass
                elif kind in OVERVOLTAGE:
                    zone = self.elements_on(self.zone(target))
                    elements |= {e for e in zone if e[0] in ("bus", "sgen")} | self.trafos()
                    for p, e in self.point_element.items():
                        q = self.points.at[p, "quantity"]
                        if e in zone and (q == "v_pu" or e[0] == "sgen"):
                            points.add(p)
                else:  # line outage and every other grid event: the feeder and the substation
                    elements |= self.elements_on(self.feeder(target)) | self.trafos()
        start = pd.Timestamp(label.start).strftime("%Y-%m-%dT%H:%M:%SZ")
        points |= self.attacked.get((kind, start), set())
        points |= {p for p, e in self.point_element.items() if e in elements}
        return points, elements


def alarm_events(alarms: pd.DataFrame, config: EvaluationConfig, topology: Topology | None = None) -> pd.DataFrame:
    """Alarm rows merged into events per point (or element) named; rows naming nothing stay single."""
    gap = pd.Timedelta(seconds=config.merge_gap_samples * config.step_s)
    rows: list[dict[str, Any]] = []
    keyed: dict[Key, list[tuple[pd.Timestamp, pd.Timestamp, str, float]]] = defaultdict(list)
    for a in alarms.itertuples(index=False):
        score = float(a.score) if not _blank(a.score) else float("nan")
        if not _blank(a.point):
            keyed[("point", str(a.point))].append((a.start, a.end, str(a.type), score))
        elif (e := _element(a.element_type, a.element)) is not None:
            keyed[("element", e)].append((a.start, a.end, str(a.type), score))
        else:
            rows.append(dict(start=a.start, end=a.end, key=None, types={str(a.type)}, rows=1, score=score))
    for key, items in keyed.items():
        items.sort(key=lambda t: t[0])
        cur: dict[str, Any] | None = None
        for start, end, kind, score in items:
            if cur is not None and start <= cur["end"] + gap:
                cur["end"] = max(cur["end"], end)
                cur["types"].add(kind)
                cur["rows"] += 1
                cur["score"] = np.nanmax([cur["score"], score])
                continue
            cur = dict(start=start, end=end, key=key, types={kind}, rows=1, score=score)
            rows.append(cur)
    frame = pd.DataFrame(rows, columns=["start", "end", "key", "types", "rows", "score"])
    names_point: list[str | None] = []
    names_element: list[tuple[str, int] | None] = []
    for key in frame.key:
        if key is None:
            names_point.append(None)
            names_element.append(None)
        elif key[0] == "point":
            names_point.append(key[1])
            names_element.append(topology.point_element.get(key[1]) if topology is not None else None)
        else:
            names_point.append(None)
            names_element.append(key[1])
    frame["point"], frame["element"] = names_point, names_element
    return frame.sort_values("start", kind="stable").reset_index(drop=True)


def _union(intervals: list[tuple[pd.Timestamp, pd.Timestamp]]) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    out: list[tuple[pd.Timestamp, pd.Timestamp]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _length(intervals: list[tuple[pd.Timestamp, pd.Timestamp]]) -> float:
    return float(sum((e - s).total_seconds() for s, e in intervals))


def _intersect(
    a: list[tuple[pd.Timestamp, pd.Timestamp]], b: list[tuple[pd.Timestamp, pd.Timestamp]]
) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if s < e:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def alarm_load(alarms: pd.DataFrame, period: tuple[pd.Timestamp, pd.Timestamp], config: EvaluationConfig) -> dict:
    """EEMUA 191 figures over the raised alarm rows: per 10 minutes (average, peak), floods, chattering."""
    seconds = max((period[1] - period[0]).total_seconds(), 1.0)
    starts = pd.DatetimeIndex(alarms.start).sort_values() if len(alarms) else pd.DatetimeIndex([], tz="UTC")
    ns = starts.asi8
    window = int(600e9)
    peak = int((np.searchsorted(ns, ns + window, side="left") - np.arange(len(ns))).max()) if len(ns) else 0
    bins = ((ns - period[0].value) // window) if len(ns) else np.array([], dtype=np.int64)
    counts = np.bincount(bins[bins >= 0]) if len(bins) else np.array([], dtype=np.int64)
    floods = int((counts > config.flood_threshold).sum())
    chattering = 0
    if len(alarms):
        ident = alarms[["type", "point", "element_type", "element"]].astype(str).agg("|".join, axis=1)
        chat_ns = int(config.chatter_window_s * 1e9)
        for _, group in alarms.groupby(ident.to_numpy()):
            t = pd.DatetimeIndex(group.start).sort_values().asi8
            k = config.chatter_raises
            if len(t) >= k and bool(((t[k - 1 :] - t[: len(t) - k + 1]) <= chat_ns).any()):
                chattering += 1
    return {
        "alarms": len(alarms),
        "per_10min_avg": len(alarms) / (seconds / 600.0),
        "per_10min_peak": peak,
        "flood_windows": floods,
        "flood_time_share": floods * 600.0 / seconds,
        "chattering_alarms": chattering,
    }


def _quantile(values: list[float], q: float) -> float | None:
    return float(np.quantile(values, q)) if values else None


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _f1(precision: float | None, recall: float | None) -> float | None:
    """F1; with labels but no alarm event at all (precision undefined, recall 0) it is 0, not unknown."""
    if recall is None:
        return None
    if precision is None:
        return 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def evaluate(
    labels: pd.DataFrame,
    alarms: pd.DataFrame,
    *,
    topology: Topology | None = None,
    period: tuple[pd.Timestamp, pd.Timestamp] | None = None,
    config: EvaluationConfig | None = None,
) -> Report:
    """Compare alarms (ALARMS_COLUMNS) with labels (LABELS_COLUMNS); see the module docstring for the rules.

    `period` is the time the data covers, [first sample, last sample + step); without it, the span
    of labels and alarms is used (and a note says so)."""
    config = config or EvaluationConfig()
    notes: list[str] = []
    for frame, cols, name in ((labels, LABELS_COLUMNS, "labels"), (alarms, ALARMS_COLUMNS, "alarms")):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise DatasetError(f"{name}: missing column(s) {missing}; expected {', '.join(cols)}")
    if topology is None or topology.net is None:
        notes.append("no network: an alarm finds a label only by naming its point or element (no topology rule)")
    notes += unknown_type_notes(labels)
    topology = topology or Topology(None, None)
    step = pd.Timedelta(seconds=config.step_s)
    grace = step * config.grace_samples
    if period is None:
        times = pd.concat([labels.start, labels.end, alarms.start, alarms.end]) if len(labels) + len(alarms) else None
        if times is None or times.empty:
            period = (pd.Timestamp(0, tz="UTC"), pd.Timestamp(0, tz="UTC") + step)
        else:
            period = (times.min(), times.max() + step)
        notes.append("period taken from the labels and alarms (give the scenario for its telemetry span)")
    days = max((period[1] - period[0]).total_seconds(), config.step_s) / 86400.0

    events = alarm_events(alarms, config, topology)
    matched_alarm = np.zeros(len(events), dtype=bool)
    ev_rows = list(events.itertuples(index=False))
    ev_start = pd.DatetimeIndex(events.start).asi8 if len(events) else np.array([], dtype=np.int64)
    ev_end = pd.DatetimeIndex(events.end).asi8 if len(events) else np.array([], dtype=np.int64)
    named = np.array([k is not None for k in events.key], dtype=bool)
    per_label: list[dict[str, Any]] = []
    for label in labels.itertuples(index=False):
        lab = pd.Series(label._asdict())
        points, elements = topology.sees(lab)
        lab_points = label_points(lab.point)
        lab_element = _element(lab.element_type, lab.element)
        first: pd.Timestamp | None = None
        exact = False
        near = np.flatnonzero(named & (ev_start <= (lab.end + grace).value) & (ev_end >= lab.start.value))
        for i in near:
            ev = ev_rows[i]
            if not (ev.point in points or (ev.element is not None and ev.element in elements)):
                continue
            matched_alarm[i] = True
            first = ev.start if first is None else min(first, ev.start)
            if lab_points:
                exact |= ev.point in lab_points
            elif lab_element is not None:
                exact |= ev.element == lab_element
        delay = None if first is None else max((first - lab.start).total_seconds(), 0.0)
        per_label.append(
            dict(
                start=lab.start,
                end=lab.end,
                type=str(lab.type),
                element_type=lab.element_type,
                element=lab.element,
                point=lab.point,
                found=first is not None,
                delay_s=delay,
                delay_samples=None if delay is None else delay / config.step_s,
                exact=bool(exact),
            )
        )
    table = pd.DataFrame(
        per_label,
        columns=[*LABELS_COLUMNS, "found", "delay_s", "delay_samples", "exact"],
    )
    n_labels, n_found = len(table), int(table.found.sum()) if len(table) else 0
    n_events, n_true = len(events), int(matched_alarm.sum())
    precision, recall = _ratio(n_true, n_events), _ratio(n_found, n_labels)
    f1 = _f1(precision, recall)
    delays = [float(d) for d in table.delay_s.dropna()] if len(table) else []
    by_type: dict[str, dict[str, Any]] = {}
    for kind, group in table.groupby("type", sort=True) if len(table) else []:
        found = int(group.found.sum())
        d = [float(x) for x in group.delay_samples.dropna()]
        by_type[str(kind)] = {
            "events": len(group),
            "found": found,
            "recall": found / len(group),
            "median_delay_samples": _quantile(d, 0.5),
        }

    dirty = _union([(s, e + step + grace) for s, e in zip(labels.start, labels.end, strict=True)])
    whole = [period]
    clean = _length(whole) - _length(_intersect(whole, dirty))
    in_alarm = _union([(s, e + step) for s, e in zip(alarms.start, alarms.end, strict=True)])
    alarm_clean = _length(_intersect(whole, in_alarm)) - _length(_intersect(_intersect(whole, in_alarm), dirty))
    return Report(
        labels=n_labels,
        found=n_found,
        alarm_events=n_events,
        true_alarm_events=n_true,
        false_alarm_events=n_events - n_true,
        precision=precision,
        recall=recall,
        f1=f1,
        median_delay_samples=None if not delays else _quantile(delays, 0.5) / config.step_s,  # type: ignore[operator]
        p90_delay_samples=None if not delays else _quantile(delays, 0.9) / config.step_s,  # type: ignore[operator]
        median_delay_s=_quantile(delays, 0.5),
        p90_delay_s=_quantile(delays, 0.9),
        days=days,
        false_alarms_per_day=(n_events - n_true) / days,
        clean_time_in_alarm=_ratio(alarm_clean, clean),
        localisation=_ratio(int(table.exact.sum()) if len(table) else 0, n_found),
        recall_by_type=by_type,
        alarm_load=alarm_load(alarms, period, config),
        grace_samples=config.grace_samples,
        step_s=config.step_s,
        clean_s=clean,
        clean_alarm_s=alarm_clean,
        notes=notes,
        events=table,
    )


def unknown_type_notes(labels: pd.DataFrame) -> list[str]:
    """A note for each label type the rules do not know (a misspelt `overvoltage` would be
    matched by the wrong rule and counted in a type of its own); a field finding's
    `inspection.…` types are expected and get none."""
    types = {str(t) for t in labels.type}
    unknown = sorted(t for t in types - KNOWN_TYPES if not t.startswith("inspection."))
    if not unknown:
        return []
    return [
        f"label type(s) {unknown} are not ones the lab knows ({', '.join(EVENT_TYPES)}): matched as a grid "
        "event on their element, or by the point they name; rename them if they are one of those"
    ]


def check_label_targets(labels: pd.DataFrame, scenario: Scenario, net: Any, path: Path) -> None:
    """Every point and element a label of a known type names is in the scenario: a label on a
    point `points.csv` lacks (or an element the network lacks) can never be found, and would
    count as a miss nobody could have avoided."""
    for row, lab in enumerate(labels.itertuples(index=False)):
        if str(lab.type) not in KNOWN_TYPES:
            continue
        where = f"{path}: row {row + 2}"
        for point in sorted(label_points(lab.point)):
            if point not in scenario.points.index:
                raise DatasetError(
                    f"{where}, column point: {point!r} is not in {scenario.path / POINTS_FILE}; "
                    "name a point of the scenario (or leave the column empty for a grid event)"
                )
        target = _element(lab.element_type, lab.element)
        if target is not None and net is not None and not in_network(net, *target):
            raise DatasetError(
                f"{where}, column element: {target[0]} {target[1]} is not in the scenario's network.json; "
                "correct the index (pandapower's) or the network"
            )


def scenario_step_s(scenario: Scenario) -> float:
    """The sampling step of a scenario in seconds (median spacing of its telemetry times)."""
    index = scenario.telemetry.index
    if len(index) >= 2:
        return float(pd.Series(index).diff().dropna().median().total_seconds())
    step = scenario.meta.get("step_s") or scenario.meta.get("step")
    try:
        return float(pd.Timedelta(step).total_seconds()) if isinstance(step, str) else float(step or 900.0)
    except ValueError:
        return 900.0


def evaluate_scenario(
    scenario: Scenario,
    alarms: pd.DataFrame,
    *,
    labels: pd.DataFrame | None = None,
    grace_samples: int = 2,
    with_network: bool = True,
    labels_path: Path | None = None,
) -> Report:
    """Evaluate alarms on a scenario: its labels (or the ones given, read from `labels_path`),
    its topology, step and time span."""
    labels = labels if labels is not None else scenario.labels
    if labels is None:
        raise DatasetError(f"{scenario.path}: no labels.csv; evaluation needs the labelled fault windows")
    step = scenario_step_s(scenario)
    config = EvaluationConfig(grace_samples=grace_samples, step_s=step)
    net = scenario.network() if with_network else None
    check_label_targets(labels, scenario, net, labels_path or scenario.path / LABELS_FILE)
    index = scenario.telemetry.index
    period = (index[0], index[-1] + pd.Timedelta(seconds=step)) if len(index) else None
    attacked = {
        (str(f.get("type")), str(f.get("start"))): {str(p) for p in f.get("params", {}).get("points", [])}
        for f in scenario.meta.get("faults", [])
        if isinstance(f, dict) and isinstance(f.get("params"), dict) and f["params"].get("points")
    }
    topology = Topology(net, scenario.points, attacked)
    return evaluate(labels, alarms, topology=topology, period=period, config=config)


def pool(reports: list[Report]) -> dict[str, Any]:
    """The figures of several reports taken together (e.g. the splits of one grid): counts and time summed,
    delays and recall by type over every label, alarm load averaged by time and peaked by maximum."""
    if not reports:
        raise ValueError("pool() needs at least one report")
    labels = sum(r.labels for r in reports)
    found = sum(r.found for r in reports)
    n_events = sum(r.alarm_events for r in reports)
    n_true = sum(r.true_alarm_events for r in reports)
    days = sum(r.days for r in reports)
    clean = sum(r.clean_s for r in reports)
    precision, recall = _ratio(n_true, n_events), _ratio(found, labels)
    f1 = _f1(precision, recall)
    tables = [r.events for r in reports if r.events is not None and len(r.events)]
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["type", "found", "delay_s"])
    step = reports[0].step_s
    delays = [float(d) for d in table.delay_s.dropna()] if len(table) else []
    by_type: dict[str, dict[str, Any]] = {}
    for kind, group in table.groupby("type", sort=True) if len(table) else []:
        k = int(group.found.sum())
        d = [float(x) / step for x in group.delay_s.dropna()]
        by_type[str(kind)] = {
            "events": len(group),
            "found": k,
            "recall": k / len(group),
            "median_delay_samples": _quantile(d, 0.5),
        }
    exact = int(table.exact.sum()) if len(table) else 0
    alarms = sum(r.alarm_load["alarms"] for r in reports)
    return {
        "labels": labels,
        "found": found,
        "alarm_events": n_events,
        "false_alarm_events": n_events - n_true,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "median_delay_samples": None if not delays else _quantile(delays, 0.5) / step,  # type: ignore[operator]
        "p90_delay_samples": None if not delays else _quantile(delays, 0.9) / step,  # type: ignore[operator]
        "median_delay_s": _quantile(delays, 0.5),
        "days": days,
        "false_alarms_per_day": (n_events - n_true) / days if days else None,
        "clean_time_in_alarm": _ratio(sum(r.clean_alarm_s for r in reports), clean),
        "localisation": _ratio(exact, found),
        "recall_by_type": by_type,
        "alarm_load": {
            "alarms": alarms,
            "per_10min_avg": alarms / (days * 144.0) if days else None,
            "per_10min_peak": max(r.alarm_load["per_10min_peak"] for r in reports),
            "flood_windows": sum(r.alarm_load["flood_windows"] for r in reports),
            "chattering_alarms": sum(r.alarm_load["chattering_alarms"] for r in reports),
        },
    }
