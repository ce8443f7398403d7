"""Labelled scenarios from the simulator: a time-series power flow of a grid with its profiles,
the telemetry a realistic metering plan delivers (with each meter's noise), and faults injected
with exact windows and targets, written in the interchange format of `anomaly.dataset` and split
chronologically into train, validation and test.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandapower as pp
import pandas as pd

from anomaly.dataset import QUANTITY_UNITS, write_scenario
from anomaly.scenarios.faults import Fault, FaultKind, GridEvent, InjectionAttack, MeasurementFault, fault_kinds
from fieldsim.instruments import TopOilModel, ambient_temperature
from gridmodel.config import NetworkConfig, TwinConfig
from gridmodel.measurements import fused_groups, measurement_sigma
from gridmodel.metering import MeteringPlan, realistic_plan

log = logging.getLogger(__name__)

PROFILE_YEAR = 2016  # SimBench's profile year; scenario times are in it
SPLITS = (("train", 0.6), ("validation", 0.2), ("test", 0.2))
_METER_TYPE = {"v_pu": "v", "p_mw": "p", "q_mvar": "q", "i_ka": "i"}
#: top-oil sensor: ±1.5 K (3σ), a common PT100 transducer class
TEMP_SIGMA_C = 0.5
#: a smart meter's class (IEC 62053-21 class 1, MID class B: ±1 %), taken as 3σ at rated power
SMART_METER_CLASS = 1.0


class ScenarioError(ValueError):
    """The scenario cannot be made as asked; the message says which input and what to do."""


@dataclass(frozen=True)
class ScenarioParams:
    grid: str  # SimBench code or pandapower JSON path
    days: float
    start_day: int = 0
    seed: int = 0
    step_minutes: int = 15
    faults_per_week: float = 8.0
    voltage_share: float = 1 / 3
    accuracy_class: float = 0.5
    large_gen_mw: float = 1.0
    #: generators above this (and below large_gen_mw) carry a smart meter gateway whose 15-minute
    #: active power reaches the grid operator; None: none do. Germany's MsbG makes one mandatory
    #: above 7 kW installed (§ 29 (1) 2) with 15-minute values (§ 55 (4)), the plan of the German
    #: grids SimBench models, so it is the default: an LV grid's "large generators" are those
    smart_meter_gen_mw: float | None = 0.007
    kinds: tuple[str, ...] = ()  # empty: every registered fault kind


@dataclass
class GridContext:
    """What fault kinds need to pick targets: the grid, its metering and its feeders."""

    net: Any
    plan: MeteringPlan
    points: pd.DataFrame
    times: pd.DatetimeIndex
    step_minutes: int
    feeders: dict[int, set[int]]  # feeder head line → buses of the feeder
    feeder_pv: dict[int, list[int]]  # feeder head line → PV sgens on it
    pv_sgens: list[int]
    temp_trafos: list[int]
    nominal_load_p: pd.Series
    nominal_sgen_p: pd.Series
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- grid and profiles


def load_source(grid: str) -> tuple[Any, dict[tuple[str, str], pd.DataFrame], str]:
    """The network and its profiles from a SimBench code or a pandapower JSON file."""
    from gridmodel.network import load_grid

    path = Path(grid)
    if path.suffix.lower() == ".json" or path.exists():
        if not path.is_file():
            raise ScenarioError(
                f"--grid {grid}: no such file (working directory {Path.cwd()}); give a network saved with "
                "pandapower.to_json, or a SimBench code such as 1-MV-rural--1-sw"
            )
        data = load_grid(NetworkConfig(simbench_code=None, file=path))
    else:
        data = load_grid(NetworkConfig(simbench_code=grid))
    profiles = {k: v for k, v in data.profiles.items() if v.shape[1] and len(getattr(data.net, k[0]))}
    note = ""
    if not profiles:
        note = (
            f"{grid}: no time-series profiles, so loads follow a typical residential daily shape and "
            "PV a clear-sky bell, both scaled from the nominal values"
        )
    return data.net, profiles, note


def _synthetic_profiles(net: Any, n_days: int) -> dict[tuple[str, str], pd.DataFrame]:
    """One year of 15-minute values from nominal loads and sgens when the grid brings none."""
    steps = np.arange(96 * max(n_days, 1))
    hour = (steps % 96) / 4.0
    load_shape = 0.45 + 0.25 * np.exp(-(((hour - 8.0) / 1.8) ** 2)) + 0.45 * np.exp(-(((hour - 19.0) / 2.2) ** 2))
    pv_shape = np.clip(np.sin((hour - 6.0) / 14.0 * np.pi), 0.0, None) ** 1.5
    out: dict[tuple[str, str], pd.DataFrame] = {}
    if len(net.load):
        for col in ("p_mw", "q_mvar"):
            out[("load", col)] = pd.DataFrame(np.outer(load_shape, net.load[col].to_numpy()), columns=net.load.index)
    if len(net.sgen):
        pv = _is_pv(net).to_numpy()
        shape = np.where(pv[None, :], pv_shape[:, None], 0.35)
        out[("sgen", "p_mw")] = pd.DataFrame(shape * net.sgen.p_mw.to_numpy()[None, :], columns=net.sgen.index)
    return out


def _is_pv(net: Any) -> pd.Series:
    text = net.sgen.get("type", pd.Series("", index=net.sgen.index)).astype(str)
    if "profile" in net.sgen:
        text = text + " " + net.sgen.profile.astype(str)
    return text.str.contains("pv", case=False)


def _profile_arrays(
    profiles: dict[tuple[str, str], pd.DataFrame], net: Any, start_day: int, steps: int, step_minutes: int
) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """(element, column) → (element index, values steps × elements), linear between 15-min rows."""
    out = {}
    for key, frame in profiles.items():
        table = getattr(net, key[0])
        cols = [c for c in frame.columns if c in table.index]
        values = frame[cols].to_numpy(dtype=float)
        n = len(values)
        pos = (start_day * 96 + np.arange(steps) * step_minutes / 15.0) % n
        lo = np.floor(pos).astype(int)
        frac = (pos - lo)[:, None]
        out[key] = (np.asarray(cols), values[lo] * (1 - frac) + values[(lo + 1) % n] * frac)
    return out


def _feeders(net: Any, plan: MeteringPlan) -> dict[int, set[int]]:
    """Buses reached from each feeder head without going back through the substation busbar."""
    import networkx as nx
    import pandapower.topology as top

    graph = top.create_nxgraph(net, respect_switches=True, include_trafos=False)
    group = fused_groups(net)
    busbar_groups = {group[int(b)] for b in net.trafo.lv_bus}
    busbars = {b for b in net.bus.index if group[int(b)] in busbar_groups}
    out: dict[int, set[int]] = {}
    for line, side in plan.feeder_heads:
        far = int(net.line.at[line, "to_bus" if side == "from" else "from_bus"])
        sub = graph.copy()
        sub.remove_nodes_from(busbars)
        out[line] = set(nx.node_connected_component(sub, far)) if far in sub else {far}
    return out


# ---------------------------------------------------------------- the metering plan as points


def build_points(net: Any, plan: MeteringPlan, large_gen_mw: float, smart_meter_gen_mw: float | None) -> pd.DataFrame:
    """points.csv rows for the plan: transformer P/Q both sides and top-oil temperature, feeder
    heads P/Q/I, bus voltages, P/Q of generators of at least `large_gen_mw` (telemetered), and P
    of smaller ones above `smart_meter_gen_mw` when given (their smart meter's 15-minute value; σ
    filled later)."""
    rows = []

    def add(name: str, etype: str, element: int, side: str, quantity: str) -> None:
        rows.append((name, etype, int(element), side, quantity, QUANTITY_UNITS[quantity], np.nan))

    for t in plan.trafos:
        for side in ("hv", "lv"):
            add(f"trafo{t}.{side}.p_mw", "trafo", t, side, "p_mw")
            add(f"trafo{t}.{side}.q_mvar", "trafo", t, side, "q_mvar")
        add(f"trafo{t}.temp_oil_c", "trafo", t, "", "temp_oil_c")
    for line, side in plan.feeder_heads:
        for q in ("p_mw", "q_mvar", "i_ka"):
            add(f"line{line}.{side}.{q}", "line", line, side, q)
    for bus in plan.voltage_buses:
        add(f"bus{bus}.v_pu", "bus", bus, "", "v_pu")
    smallest = large_gen_mw if smart_meter_gen_mw is None else smart_meter_gen_mw
    metered = (net.sgen.p_mw >= large_gen_mw) | (net.sgen.p_mw > smallest)
    for s in net.sgen.index[net.sgen.in_service & metered]:
        add(f"sgen{s}.p_mw", "sgen", s, "", "p_mw")
        if net.sgen.at[s, "p_mw"] >= large_gen_mw:
            add(f"sgen{s}.q_mvar", "sgen", s, "", "q_mvar")
    frame = pd.DataFrame(rows, columns=["point", "element_type", "element", "side", "quantity", "unit", "sigma"])
    return frame.set_index("point")


def _result_columns(points: pd.DataFrame) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """Per (res table, column): the point positions and element indices to read each step."""
    groups: dict[tuple[str, str], tuple[list[int], list[int]]] = {}
    for pos, row in enumerate(points.itertuples()):
        if row.quantity == "temp_oil_c":
            continue
        if row.element_type == "bus":
            key = ("res_bus", "vm_pu")
        elif row.element_type in ("line", "trafo"):
            what, unit = row.quantity.split("_")
            key = (f"res_{row.element_type}", f"{what}_{row.side}_{unit}")
        else:
            key = ("res_sgen", row.quantity)
        groups.setdefault(key, ([], []))
        groups[key][0].append(pos)
        groups[key][1].append(int(row.element))
    return [(t, c, np.asarray(p), np.asarray(e)) for (t, c), (p, e) in groups.items()]


# ---------------------------------------------------------------- fault drawing


def draw_faults(
    ctx: GridContext, kinds: dict[str, FaultKind], rng: np.random.Generator, first: int, last: int, per_week: float
) -> list[Fault]:
    """Faults in steps [first, last]: a Poisson number at `per_week`, random kinds, targets and
    durations; two faults never overlap on one target, grid events never overlap each other."""
    steps_per_hour = 60 / ctx.step_minutes
    span_weeks = (last - first + 1) / steps_per_hour / 24 / 7
    wanted = max(1, int(rng.poisson(per_week * span_weeks)))
    names = sorted(kinds)
    faults: list[Fault] = []
    attempts = 0
    while len(faults) < wanted and attempts < wanted * 30:
        attempts += 1
        kind = kinds[str(rng.choice(names))]
        length = 1 if kind.hours[1] <= 0 else int(round(rng.uniform(*kind.hours) * steps_per_hour))
        length = max(1, min(length, last - first + 1))
        start = int(rng.integers(first, last - length + 2))
        if kind.start_hours is not None:
            day = start // int(24 * steps_per_hour)  # step 0 is midnight UTC of --start-day
            hour = int(rng.integers(kind.start_hours[0], kind.start_hours[1] + 1))
            start = int((day * 24 + hour) * steps_per_hour)
            if start < first or start + length - 1 > last:
                continue
        end = start + length - 1
        fault = kind.draw(ctx, rng, start, end)
        if fault is None:
            continue
        margin = int(steps_per_hour)  # an hour of normal data between faults on one target
        clash = any(
            f.start - margin <= end
            and start <= f.end + margin
            and (
                f.targets() & fault.targets()
                or (kind.family != "measurement" and kinds[f.kind].family != "measurement")
            )
            for f in faults
        )
        if not clash:
            faults.append(fault)
    return sorted(faults, key=lambda f: (f.start, f.kind, f.element))


# ---------------------------------------------------------------- simulation


def _ambient(times: pd.DatetimeIndex) -> np.ndarray:
    """Seasonal mean (5 °C in January, 20 °C in July) plus the daily swing of fieldsim."""
    doy = times.dayofyear.to_numpy()
    base = 12.5 - 7.5 * np.cos((doy - 15) / 365.0 * 2 * np.pi)
    hours = times.hour.to_numpy() + times.minute.to_numpy() / 60.0
    return np.array([ambient_temperature(b, h) for b, h in zip(base, hours, strict=True)])


def _runpp(net: Any, step: int, times: pd.DatetimeIndex, active: list[Fault], warm: bool) -> None:
    """Newton-Raphson from the previous step's result when the topology is unchanged; else from
    pandapower's own start (a flat start ignores transformer phase shifts and can fail)."""
    for init in ("results", "auto", "dc") if warm else ("auto", "dc"):
        try:
            pp.runpp(net, init=init, numba=False)
            return
        except Exception as exc:  # LoadflowNotConverged or a singular Jacobian from a bad start
            error = exc
    events = ", ".join(f"{f.kind} on {f.element_type} {f.element}" for f in active) or "none"
    raise ScenarioError(
        f"power flow at step {step} ({times[step]}) did not converge ({type(error).__name__}); active events: "
        f"{events}; try another --seed or fewer --faults-per-week"
    )


def simulate(
    ctx: GridContext,
    profiles: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]],
    events: list[tuple[Fault, GridEvent]],
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Exact telemetry (steps × points) from a warm-started power flow per step, grid events
    applied in their windows, and the transformers' top-oil temperatures."""
    net, points, times = ctx.net, ctx.points, ctx.times
    n_steps = len(times)
    columns = _result_columns(points)
    temp_rows = [(i, int(row.element)) for i, row in enumerate(points.itertuples()) if row.quantity == "temp_oil_c"]
    thermal = {t: TopOilModel() for _pos, t in temp_rows}
    normal = {t: TopOilModel() for _pos, t in temp_rows}  # the same transformer with its cooling intact
    excess = ctx.extra["oil_excess_k"] = {t: np.zeros(n_steps) for _pos, t in temp_rows}
    rated_rise = TopOilModel().rated_rise_k
    ambient = _ambient(times)
    base_flags = {name: getattr(net, name).in_service.copy() for name in ("line", "sgen", "load", "trafo")}
    positions = {
        (table, col): getattr(net, table).index.get_indexer(idx) for (table, col), (idx, _v) in profiles.items()
    }
    res_positions = {(t, c): getattr(net, t.replace("res_", "")).index.get_indexer(e) for t, c, _p, e in columns}
    out = np.empty((n_steps, len(points)))
    previous: list[int] = []
    record = ctx.extra.get("record_steps", set())  # steps whose true bus voltages an attack needs
    voltages = ctx.extra.setdefault("voltages", {})
    for step in range(n_steps):
        ctx.extra["step"] = step
        for name, flags in base_flags.items():
            getattr(net, name)["in_service"] = flags.to_numpy()
        for (table, col), (_idx, values) in profiles.items():
            frame = getattr(net, table)
            frame.iloc[positions[(table, col)], frame.columns.get_loc(col)] = values[step]
        active = [(f, k) for f, k in events if f.active(step)]
        for fault, kind in active:
            kind.apply(fault, net, ctx)
        active_ids = [id(f) for f, _k in active]
        warm = step > 0 and active_ids == previous  # same topology: isolated buses stay isolated
        _runpp(net, step, times, [f for f, _k in active], warm)
        previous = active_ids
        for _again in range(6):
            if not any([kind.observe(fault, net, ctx) for fault, kind in active]):
                break
            for fault, kind in active:
                kind.apply(fault, net, ctx)
            _runpp(net, step, times, [f for f, _k in active], True)
        if step in record:
            va = np.deg2rad(net.res_bus.va_degree.to_numpy())
            voltages[step] = np.nan_to_num(net.res_bus.vm_pu.to_numpy() * np.exp(1j * va))
        for table, col, pos, _elements in columns:
            values = getattr(net, table)[col].to_numpy()[res_positions[(table, col)]]
            out[step, pos] = np.nan_to_num(values, nan=0.0)  # a de-energised meter reads zero
        for temp_pos, t in temp_rows:
            model = thermal[t]
            factor = 1.0
            for fault, kind in active:
                factor *= kind.rise_factor(fault, t)
            model.rated_rise_k = rated_rise * factor
            loading = float(np.nan_to_num(net.res_trafo.at[t, "loading_percent"])) / 100.0
            out[step, temp_pos] = model.step(loading, float(ambient[step]), ctx.step_minutes)
            excess[t][step] = out[step, temp_pos] - normal[t].step(loading, float(ambient[step]), ctx.step_minutes)
        if progress is not None:
            progress(step + 1, n_steps)
    return out


def point_sigmas(
    points: pd.DataFrame,
    exact: np.ndarray,
    accuracy_class: float,
    smart_meter_rating_mw: dict[str, float] | None = None,
) -> np.ndarray:
    """σ per point from its meter's accuracy class at the point's typical (median) magnitude;
    a smart-metered generator's (`smart_meter_rating_mw`: point → rated MW) from the meter's class
    at its rating. The noise added is drawn with exactly this σ, so points.csv and the data agree."""
    cfg = TwinConfig()
    typical = np.nanmedian(np.abs(exact), axis=0)
    smart = smart_meter_rating_mw or {}
    out = np.empty(len(points))
    for i, (name, quantity) in enumerate(zip(points.index, points.quantity, strict=True)):
        if name in smart:
            out[i] = SMART_METER_CLASS / 100.0 / 3.0 * smart[name]
        elif quantity == "temp_oil_c":
            out[i] = TEMP_SIGMA_C
        else:
            out[i] = measurement_sigma(_METER_TYPE[quantity], float(typical[i]), accuracy_class, cfg)
    return out


# ---------------------------------------------------------------- the whole scenario


def _operator_model(net: Any) -> Any:
    """The grid as the operator's model knows it: nominal loads and generators, no profiles."""
    import copy

    model = copy.deepcopy(net)
    for key in ("profiles", "loadcases"):
        if key in model:
            del model[key]
    return model


def _simulate_labelled(
    ctx: GridContext,
    profiles: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]],
    faults: list[Fault],
    kinds: dict[str, FaultKind],
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, list[Fault], list[Fault]]:
    """(exact telemetry, the faults as labelled, the grid events dropped). A grid event whose effect
    no label can name (a PV surplus that never passed the band) must not stay in the data as an
    unlabelled anomaly: the grid is simulated again, from the faults as drawn, without it, until
    every grid event simulated is labelled (each pass can only drop events, so it ends)."""
    import copy

    drawn = copy.deepcopy(faults)  # simulate and settle change windows and parameters
    dropped: list[Fault] = []
    while True:
        faults = copy.deepcopy(drawn)
        for key in [k for k in ctx.extra if ":" in k]:  # per-fault caches of the previous pass
            del ctx.extra[key]
        events = [(f, k) for f in faults if isinstance(k := kinds[f.kind], GridEvent)]
        exact = simulate(ctx, profiles, events, progress)
        unlabelled = [
            i for i, f in enumerate(faults) if isinstance(k := kinds[f.kind], GridEvent) and not k.settle(f, ctx)
        ]
        if not unlabelled:
            return exact, faults, dropped
        dropped += [faults[i] for i in unlabelled]
        drawn = [f for i, f in enumerate(drawn) if i not in set(unlabelled)]
        log.info("grid events without a labelled effect dropped; simulating again", extra={"dropped": len(unlabelled)})


@dataclass
class GeneratedScenario:
    """What `generate` made: where, how long it took and the faults (for the caller's report)."""

    out: Path
    splits: dict[str, Path]
    faults: list[Fault]
    seconds: dict[str, float]
    notes: list[str]


def generate(
    params: ScenarioParams,
    out: Path | str,
    *,
    progress: Callable[[int, int], None] | None = None,
    choose_faults: Callable[[GridContext], list[Fault]] | None = None,
) -> GeneratedScenario:
    """Simulate, inject, label and write OUT/train, OUT/validation and OUT/test. `choose_faults`
    replaces the seeded draw with a given list (to reproduce or test one case)."""
    warnings.filterwarnings("ignore", message=".*numba.*")
    warnings.filterwarnings("ignore", category=FutureWarning)
    t0 = time.perf_counter()
    if params.days <= 0 or params.step_minutes <= 0:
        raise ScenarioError(f"--days ({params.days}) and --step-minutes ({params.step_minutes}) must be positive")
    registry = fault_kinds()
    unknown = sorted(set(params.kinds) - set(registry))
    if unknown:
        raise ScenarioError(f"--kinds: unknown fault kind(s) {unknown}; choose from {', '.join(sorted(registry))}")
    net, raw_profiles, note = load_source(params.grid)
    notes = [note] if note else []
    n_steps = int(round(params.days * 24 * 60 / params.step_minutes))
    if n_steps < 10:
        raise ScenarioError(f"--days {params.days} gives {n_steps} steps of {params.step_minutes} min; ask for more")
    if not raw_profiles:
        raw_profiles = _synthetic_profiles(net, 365)
    operator = _operator_model(net)
    seeds = np.random.SeedSequence(params.seed).spawn(3)
    rng_faults, rng_noise, rng_attack = (np.random.default_rng(s) for s in seeds)
    plan = realistic_plan(
        net, voltage_share=params.voltage_share, seed=params.seed, accuracy_class=params.accuracy_class
    )
    points = build_points(net, plan, params.large_gen_mw, params.smart_meter_gen_mw)
    start = pd.Timestamp(f"{PROFILE_YEAR}-01-01", tz="UTC") + pd.Timedelta(days=params.start_day)
    times = pd.date_range(start, periods=n_steps, freq=f"{params.step_minutes}min")
    feeders = _feeders(net, plan)
    pv = _is_pv(net) & net.sgen.in_service
    pv_sgens = [int(s) for s in net.sgen.index[pv]]
    ctx = GridContext(
        net=net,
        plan=plan,
        points=points,
        times=times,
        step_minutes=params.step_minutes,
        feeders=feeders,
        feeder_pv={h: [s for s in pv_sgens if int(net.sgen.at[s, "bus"]) in buses] for h, buses in feeders.items()},
        pv_sgens=pv_sgens,
        temp_trafos=[int(e) for e in points.element[points.quantity == "temp_oil_c"]],
        nominal_load_p=operator.load.p_mw.copy(),
        nominal_sgen_p=operator.sgen.p_mw.copy(),
    )
    kinds = {name: cls() for name, cls in registry.items() if not params.kinds or name in params.kinds}
    bounds = _split_bounds(n_steps)
    faults: list[Fault] = []
    for first, last in bounds.values():
        faults += draw_faults(ctx, kinds, rng_faults, first, last, params.faults_per_week)
    if choose_faults is not None:
        faults = sorted(choose_faults(ctx), key=lambda f: (f.start, f.kind, f.element))
        kinds = {name: cls() for name, cls in registry.items()}
    ctx.extra["record_steps"] = {
        s for f in faults if isinstance(kinds[f.kind], InjectionAttack) for s in range(f.start, f.end + 1)
    }
    t1 = time.perf_counter()
    profile_arrays = _profile_arrays(raw_profiles, net, params.start_day, n_steps, params.step_minutes)
    exact, faults, dropped = _simulate_labelled(ctx, profile_arrays, faults, kinds, progress)
    if dropped:
        notes.append(
            f"{len(dropped)} grid event(s) had no effect the label could name (e.g. no step past the band); "
            "the grid was simulated again without them (scenario.json: dropped_events)"
        )
    t2 = time.perf_counter()
    smart = {  # at their ratings (the network's values now are the last simulated step's)
        name: float(ctx.nominal_sgen_p.at[int(e)])
        for name, et, e in zip(points.index, points.element_type, points.element, strict=True)
        if et == "sgen" and float(ctx.nominal_sgen_p.at[int(e)]) < params.large_gen_mw
    }
    sigma = point_sigmas(points, exact, params.accuracy_class, smart)
    points["sigma"] = sigma
    values = exact + rng_noise.normal(0.0, 1.0, exact.shape) * sigma[None, :]
    magnitude = points.quantity.isin(["i_ka", "v_pu"]).to_numpy()
    values[:, magnitude] = np.abs(values[:, magnitude])  # meters report magnitudes
    for fault in faults:
        kind = kinds[fault.kind]
        if isinstance(kind, InjectionAttack):
            kind.inject(fault, ctx, operator, values, sigma, rng_attack)  # type: ignore[attr-defined]
    for fault in faults:
        kind = kinds[fault.kind]
        if isinstance(kind, MeasurementFault):
            col = points.index.get_loc(fault.point)
            column = values[:, col].copy()
            kind.apply(fault, column, float(sigma[col]), rng_attack)
            values[:, col] = column
    t3 = time.perf_counter()
    telemetry = pd.DataFrame(values, index=times, columns=points.index)
    out_dir = Path(out)
    splits = {}
    for name, (first, last) in bounds.items():
        # a fault belongs to each split it touches (an overheating's label outlasts the failure
        # and may run on into the next split), its label clipped to the split
        part = [f for f in faults if f.start <= last and f.end >= first]
        meta = {
            "grid": params.grid,
            "seed": params.seed,
            "days": params.days,
            "start_day": params.start_day,
            "step_minutes": params.step_minutes,
            "split": name,
            "split_start": times[first].strftime("%Y-%m-%dT%H:%M:%SZ"),
            "split_end": times[last].strftime("%Y-%m-%dT%H:%M:%SZ"),
            "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(params).items()},
            "notes": notes,
            "faults": [_fault_record(f, times) for f in part],
            # grid events drawn but left out of the simulation (no labelled effect): none is in the data
            "dropped_events": [_fault_record(f, times) for f in dropped if first <= f.start <= last],
            "unlabelled_events": [],
        }
        splits[name] = write_scenario(
            out_dir / name,
            net=operator,
            points=points,
            telemetry=telemetry.iloc[first : last + 1],
            labels=_labels(part, times, first, last),
            meta=meta,
        )
    t4 = time.perf_counter()
    seconds = {"setup": t1 - t0, "power_flow": t2 - t1, "faults_noise": t3 - t2, "write": t4 - t3, "total": t4 - t0}
    log.info("scenario written", extra={"out": str(out_dir), "steps": n_steps, "faults": len(faults), **seconds})
    return GeneratedScenario(out_dir, splits, faults, seconds, notes)


def _split_bounds(n_steps: int) -> dict[str, tuple[int, int]]:
    """Chronological 60/20/20 step ranges (inclusive), never shuffled."""
    out, first = {}, 0
    cumulative = 0.0
    for name, share in SPLITS:
        cumulative += share
        last = n_steps - 1 if name == SPLITS[-1][0] else int(math.floor(n_steps * cumulative)) - 1
        out[name] = (first, last)
        first = last + 1
    return out


def _labels(faults: list[Fault], times: pd.DatetimeIndex, first: int, last: int) -> pd.DataFrame:
    rows = [
        {
            "start": times[max(f.start, first)],
            "end": times[min(f.end, last)],
            "type": f.kind,
            "element_type": f.element_type,
            "element": f.element,
            "point": f.point,
        }
        for f in faults
    ]
    return pd.DataFrame(rows, columns=["start", "end", "type", "element_type", "element", "point"])


def _fault_record(fault: Fault, times: pd.DatetimeIndex) -> dict[str, Any]:
    return {
        "type": fault.kind,
        "start": times[fault.start].strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end": times[fault.end].strftime("%Y-%m-%dT%H:%M:%SZ"),
        "element_type": fault.element_type,
        "element": fault.element,
        "point": fault.point,
        "params": fault.params,
    }
