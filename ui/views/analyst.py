"""The analyst's page (the anomaly lab): pick a scenario set (or generate a small one), train the
lab pipeline with progress, read a model's report card (recall by fault type, delay, false alarms
per day, alarm load), look at a point's series with its labels and the model's alarms overlaid,
and deploy a model to the live detectors.

Viewing needs `anomaly.view`; training `anomaly.train` and deploying `anomaly.deploy`, checked
again inside each handler (server-side, deny by default). Training and deploying are written to
the audit record before they happen."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from gridverse.auth.roles import Permission
from ui import data
from ui.signin import allowed, require, source

SPLITS = ("train", "validation", "test")
GENERATE_GRID = "1-LV-rural1--0-sw"  # a small SimBench grid: 8 days take about 2 min on this 2-core machine


def _registry() -> Any:
    from anomaly.registry import ModelRegistry

    return ModelRegistry(data.settings().anomaly.models_dir)


def _audit() -> Any:
    from gridverse.audit import open_audit

    return open_audit(data.settings())


def scenario_sets(root: Path) -> dict[str, Path]:
    """Scenario sets under `root`: folders with train/validation/test splits, or one scenario."""
    if not root.is_dir():
        return {}
    out = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if (folder / "points.csv").exists() or any((folder / s / "points.csv").exists() for s in SPLITS):
            out[folder.name] = folder
    return out


def splits(folder: Path) -> dict[str, Path]:
    """The splits of a set ({"all": folder} for a single scenario directory)."""
    found = {s: folder / s for s in SPLITS if (folder / s / "points.csv").exists()}
    return found or {"all": folder}


@st.cache_resource(max_entries=8, show_spinner="Reading the scenario…")
def _scenario(path: str, stamp: float) -> Any:
    from anomaly.dataset import read_scenario

    return read_scenario(path)


def scenario(path: Path) -> Any:
    """A scenario directory, read once per version of its telemetry file."""
    stamp = (path / "telemetry.csv.gz").stat().st_mtime if (path / "telemetry.csv.gz").exists() else 0.0
    return _scenario(str(path), stamp)


@st.cache_resource(max_entries=8, show_spinner="Scoring the scenario with the model…")
def _alarms(model_path: str, scenario_path: str, stamp: float) -> pd.DataFrame:
    """The alarms a stored model raises on a scenario (cached per model, scenario and file version)."""
    from anomaly.registry import load_folder

    model, _card = load_folder(model_path)  # a model of other library versions warns (logged)
    return model.detect(scenario(Path(scenario_path)))


# -- actions (each checks the permission itself) ------------------------------------------------
def generate_set(root: Path, name: str, days: float, seed: int) -> Path:
    """Generate a small labelled scenario set `root/name` on a small SimBench grid, with progress."""
    require(Permission.ANOMALY_TRAIN)
    from anomaly.registry import RegistryError
    from anomaly.scenarios import ScenarioParams, generate

    if not name or "/" in name or name.startswith("."):
        raise RegistryError(f"scenario set name {name!r}: give a plain folder name")
    bar = st.progress(0.0, text=f"power flows of {GENERATE_GRID} ({days:g} days)…")

    def progress(done: int, total: int) -> None:
        bar.progress(min(done / max(total, 1), 1.0), text=f"power flow {done} of {total}")

    result = generate(ScenarioParams(grid=GENERATE_GRID, days=days, seed=seed), root / name, progress=progress)
    bar.progress(1.0, text=f"written in {result.seconds['total']:.0f} s: {', '.join(result.splits)}")
    return Path(result.out)


def train(folder: Path, name: str) -> Any:
    """Train the lab pipeline on the set's training split (all of it for a single scenario),
    evaluate on its validation split, store it; recorded in the audit record first."""
    user = require(Permission.ANOMALY_TRAIN)
    from anomaly.cli import _report_of
    from anomaly.pipeline import LabPipeline
    from anomaly.registry import RegistryError

    registry = _registry()
    registry._check_name(name)
    parts = splits(folder)
    first = parts.get("train", parts.get("all"))
    if first is None:
        raise RegistryError(f"{folder}: no training split (train/ or a scenario directory)")
    train_dirs = [first]
    _audit().append(
        user.name,
        user.role.value,
        "model.train",
        name,
        source=source(),
        after={"data": [str(d) for d in train_dirs], "params": LabPipeline().get_params(deep=False)},
    )
    bar = st.progress(0.0, text="reading the training data…")
    scenarios = [scenario(d) for d in train_dirs]
    started = time.perf_counter()

    def progress(done: int, total: int, *rest: Any) -> None:
        bar.progress(min(done / max(total, 1), 1.0) * 0.8, text=f"fitting: step {done} of {total}")

    model = LabPipeline().fit(scenarios, progress=progress)
    train_s = time.perf_counter() - started
    report = None
    if "validation" in parts:
        bar.progress(0.85, text="evaluating on the validation split…")
        report = _report_of(model, [scenario(parts["validation"])])
    card = registry.save(name, model, data=train_dirs, report=report, train_s=train_s)
    bar.progress(1.0, text=f"stored {card.ref} ({train_s:.1f} s)")
    return card


def deploy(ref: str, reason: str = "") -> Any:
    """Deploy a model to the live detectors; the audit record gets it first (who, from where, before/after)."""
    user = require(Permission.ANOMALY_DEPLOY)
    return _registry().deploy(
        ref, audit=_audit(), actor=user.name, role=user.role.value, source=source(), reason=reason
    )


# -- drawing --------------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def report_card(report: dict[str, Any] | None) -> None:
    """The figures an analyst judges a model by, as metrics, tables and a bar chart."""
    if not report:
        st.info("No evaluation report: this model was trained without a validation split.")
        return
    cols = st.columns(5)
    cols[0].metric("Event F1", _fmt(report.get("f1")))
    cols[1].metric("Recall", _fmt(report.get("recall")))
    cols[2].metric("Median delay (samples)", _fmt(report.get("median_delay_samples"), 1))
    cols[3].metric("False alarms / day", _fmt(report.get("false_alarms_per_day"), 2))
    cols[4].metric("Clean time in alarm", _fmt(report.get("clean_time_in_alarm"), 4))
    by_type = pd.DataFrame.from_dict(report.get("recall_by_type") or {}, orient="index")
    if len(by_type):
        by_type.index.name = "fault type"
        st.markdown("**Recall by fault type**")
        st.dataframe(by_type, width="stretch")
        st.bar_chart(by_type["recall"], horizontal=True, x_label="recall", y_label="fault type")
    load = report.get("alarm_load") or {}
    if load:
        st.markdown("**Alarm load (EEMUA 191)**")
        names = {
            "alarms": "alarms",
            "per_10min_avg": "alarms per 10 min (average)",
            "per_10min_peak": "alarms per 10 min (peak)",
            "flood_windows": "flood windows (> 10 in 10 min)",
            "chattering_alarms": "chattering alarms",
        }
        st.dataframe(
            pd.DataFrame({"figure": [names.get(k, k) for k in load], "value": [str(v) for v in load.values()]}),
            hide_index=True,
            width="stretch",
        )


def labelled_points(scn: Any) -> list[str]:
    """The scenario's points some label names, in telemetry column order (a false-data injection's
    label names every point it falsified, `;`-separated)."""
    from anomaly.evaluate import label_points

    if scn.labels is None or not len(scn.labels):
        return []
    named: set[str] = set().union(*scn.labels.point.map(label_points))
    return [p for p in scn.telemetry.columns if p in named]


def series_figure(scn: Any, point: str, alarms: pd.DataFrame | None) -> Any:
    """A point's telemetry with label windows (red) and the model's alarms (orange) as shaded spans."""
    import plotly.graph_objects as go

    from anomaly.evaluate import label_points

    values = scn.telemetry[point]
    fig = go.Figure(go.Scatter(x=values.index, y=values.to_numpy(), mode="lines", name=point, line={"width": 1}))
    element = scn.points.loc[point]
    if scn.labels is not None:
        names = scn.labels.point.map(label_points)  # an FDIA label names its points `a;b;c`
        mine = scn.labels[
            names.map(lambda named: point in named).to_numpy(dtype=bool)
            | ((scn.labels.element_type == element.element_type) & (scn.labels.element == element.element))
        ]
        for lab in mine.itertuples():
            fig.add_vrect(
                x0=lab.start,
                x1=lab.end,
                fillcolor="red",
                opacity=0.18,
                line_width=0,
                annotation_text=f"label: {lab.type}",
                annotation_position="top left",
            )
    if alarms is not None and len(alarms):
        for a in alarms[alarms.point == point].itertuples():
            fig.add_vrect(
                x0=a.start,
                x1=a.end,
                fillcolor="orange",
                opacity=0.3,
                line_width=0,
                annotation_text=f"alarm: {a.type}",
                annotation_position="bottom left",
            )
    unit = element.unit
    fig.update_layout(height=360, margin={"l": 10, "r": 10, "t": 30, "b": 10}, yaxis_title=f"{point} [{unit}]")
    return fig


def live_status(site: str) -> None:
    """What the live detectors' model part reported last (warming up, scoring, failed), and how fresh that is."""
    from anomaly.live import LIVE_STATUS

    try:
        rows = data.historian().latest(LIVE_STATUS, tags={"site": site})
    except Exception as exc:  # the historian is down: say so rather than show nothing
        st.warning(f"Live scoring status unavailable: the historian cannot be read ({exc}).")
        return
    if not rows:
        st.info("Live scoring has reported nothing yet: is the stack running with its detectors?")
        return
    r = rows[0]
    f = r.fields
    age_s = (time.time_ns() - r.time_ns) / 1e9
    text = f"Live scoring with **{f.get('model') or 'no model'}**: {f.get('state')} — {f.get('message')}"
    if age_s > 120:
        st.warning(f"{text} (reported {age_s / 60:.0f} min ago: the detectors may not be running)")
    elif f.get("state") == "failed":
        st.error(text)
    elif f.get("state") == "scoring":
        st.success(text)
    else:
        st.info(text)
    if f.get("active"):
        st.caption(f"In alarm now: {f['active']}")
    if f.get("warning"):
        st.warning(str(f["warning"]))


def page() -> None:
    require(Permission.ANOMALY_VIEW)
    from anomaly.registry import version_mismatch

    settings = data.settings()
    st.title("Anomaly lab")
    registry = _registry()
    cards = registry.cards()
    deployed = registry.deployed_ref()
    live = deployed or "default/v1 (shipped)"
    st.caption(
        f"Live detectors score with **{live}** (`anomaly.model: {settings.anomaly.model}`, "
        f"{'on' if settings.anomaly.model_enabled else 'off'})."
    )
    live_status(settings.site.name)

    # -- scenario sets ----------------------------------------------------------------------------
    root = Path(settings.anomaly.scenarios_dir)
    sets = scenario_sets(root)
    st.subheader("Scenario sets")
    chosen: Path | None = None
    if sets:
        name = st.selectbox("Scenario set", list(sets), key="lab.set")
        chosen = sets[name]
        st.caption(f"`{chosen}` — splits: {', '.join(splits(chosen))}")
    else:
        st.info(f"No scenario sets in `{root}` yet (make one below or with `gridverse anomaly scenarios --out DIR`).")
    if allowed(Permission.ANOMALY_TRAIN):
        with st.expander("Generate a small scenario set"):
            new_name = st.text_input("Folder name", value="small", key="lab.gen.name")
            days = st.number_input("Days", min_value=3.0, max_value=30.0, value=8.0, step=1.0, key="lab.gen.days")
            seed = int(st.number_input("Seed", min_value=0, value=1, step=1, key="lab.gen.seed"))
            if st.button(f"Generate on {GENERATE_GRID}", key="lab.gen.go"):
                try:
                    out = generate_set(root, new_name, float(days), seed)
                    st.success(f"Scenario set written to `{out}`.")
                except Exception as exc:
                    st.error(f"Not generated: {exc}")

    # -- training -----------------------------------------------------------------------------------
    if chosen is not None and allowed(Permission.ANOMALY_TRAIN):
        st.subheader("Train")
        model_name = st.text_input("Model name", value=f"lab-{chosen.name}", key="lab.train.name")
        if st.button("Train the lab pipeline", key="lab.train.go", type="primary"):
            try:
                card = train(chosen, model_name)
                st.success(f"Trained and stored {card.ref} in {card.train_s:.1f} s.")
                st.session_state["lab.model.pick"] = card.ref  # its report card below
                cards = registry.cards()
            except Exception as exc:
                st.error(f"Not trained: {exc}")

    # -- models ---------------------------------------------------------------------------------------
    st.subheader("Models")
    if not cards:
        st.info("No models; train one above or with `gridverse anomaly train --data DIR --model NAME`.")
        return
    table = pd.DataFrame(
        [
            {
                "model": c.ref,
                "deployed": c.ref == deployed or (deployed is None and c.path == str(_shipped())),
                "created": c.created,
                "F1": (c.report or {}).get("f1"),
                "train s": c.train_s,
                "data hash": c.data_hash[:19],
            }
            for c in cards
        ]
    )
    st.dataframe(table, hide_index=True, width="stretch")
    refs = [c.ref for c in cards]
    if st.session_state.get("lab.model.pick") not in refs:
        st.session_state["lab.model.pick"] = deployed if deployed in refs else refs[-1]
    ref = st.selectbox("Model", refs, key="lab.model.pick")
    card = cards[refs.index(ref)]
    libs = ", ".join(f"{k} {v}" for k, v in sorted(card.libraries.items()))
    st.caption(f"{card.ref}: trained on {', '.join(card.data) or 'n/a'} ({card.data_hash[:19]}…); {libs}")
    mismatch = version_mismatch(card)
    if mismatch:
        st.warning(mismatch)
    report_card(card.report)
    if allowed(Permission.ANOMALY_DEPLOY):
        reason = st.text_input("Why deploy it (kept in the audit record)", key="lab.deploy.reason")
        if st.button(f"Deploy {card.ref} to the live detectors", key="lab.deploy.go"):
            try:
                done = deploy(card.ref, reason)
                st.success(f"Deployed {done.ref}: the live detectors load it on their next cycle.")
            except Exception as exc:
                st.error(f"Not deployed: {exc}")

    # -- a point's series ---------------------------------------------------------------------------
    if chosen is not None:
        st.subheader("A point's series, labels and alarms")
        parts = splits(chosen)
        split = st.selectbox("Split", list(parts), index=len(parts) - 1, key="lab.series.split")
        scn = scenario(parts[split])
        points = list(scn.telemetry.columns)
        labelled = labelled_points(scn)
        point = st.selectbox("Point (labelled first)", labelled + [p for p in points if p not in labelled])
        alarms = None
        if st.toggle(f"Overlay the alarms of {card.ref}", value=True, key="lab.series.alarms"):
            stamp = (parts[split] / "telemetry.csv.gz").stat().st_mtime
            try:
                alarms = _alarms(card.path, str(parts[split]), stamp)
            except Exception as exc:  # e.g. a model fitted on an older feature set
                st.warning(f"{card.ref} cannot score this scenario ({type(exc).__name__}: {exc}); retrain it.")
        st.plotly_chart(series_figure(scn, point, alarms), width="stretch")


def _shipped() -> Path:
    from anomaly.registry import SHIPPED_DEFAULT

    return SHIPPED_DEFAULT
