"""Field technicians' routes: the inspection route of a substation generated from live risk,
walked step by step with the step's view, why it is on the route, the live values to compare,
the checklist and findings form, the 3D viewer, and downloads (GLB, offline route pack).

Viewing needs `inspect.view`; recording a finding needs `inspect.record`, checked again inside
the handler (server-side, deny by default)."""

from __future__ import annotations

import importlib
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import streamlit as st
import streamlit.components.v1 as components

from gridverse.auth.roles import Permission
from inspection.checklists import READINGS, checklist_for
from inspection.config import AssetConfig
from inspection.routes import Route, RouteStep
from inspection.state import read_render_stamp
from ui import data
from ui.signin import allowed, require, source

ROUTES_KEY = "routes.route"  # substation → Route, in this browser session
STEP_KEY = "routes.step"
RESULT_KEY = "routes.result"


def _asset(substation: str, name: str) -> AssetConfig:
    return next(a for a in data.settings().assets.get(substation, []) if a.name == name)


def _generate(substation: str) -> None:
    """Assess every equipment of the substation and route it (the N-1 takes a few seconds once)."""
    require(Permission.INSPECT_VIEW)
    from inspection.routes import build_route

    with st.spinner(f"Assessing {substation}: live state and N-1 of each equipment…"):
        route = build_route(data.settings(), data.historian(), substation)
    st.session_state.setdefault(ROUTES_KEY, {})[substation] = route
    st.session_state[STEP_KEY] = 0


def _record(substation: str, route: Route, step: RouteStep) -> None:
    """The findings form's handler: audited, written to the historian and the labels file."""
    user = require(Permission.INSPECT_RECORD)  # the handler checks too, not only the page
    from inspection.findings import Finding, FindingError, photo_hash, record_finding

    checks = {}
    readings: dict[str, float] = {}
    for c in step.checks:
        outcome = st.session_state.get(f"routes.{step.number}.{c.key}")
        if outcome in ("pass", "fail", "n/a"):
            checks[c.key] = outcome
        if c.reading:
            value = st.session_state.get(f"routes.{step.number}.{c.key}.reading")
            if value is not None:
                readings[c.reading] = float(value)
    photos = [photo_hash(f.getvalue()) for f in st.session_state.get(f"routes.{step.number}.photos") or []]
    finding = Finding(
        substation,
        step.asset,
        checks,
        readings,
        notes=st.session_state.get(f"routes.{step.number}.notes", ""),
        photos=photos,
        step=step.number,
        route_generated=route.generated,
    )
    try:
        result = record_finding(
            data.settings(), data.historian(), finding, actor=user.name, role=user.role.value, source=source()
        )
    except (FindingError, OSError) as exc:
        st.session_state[RESULT_KEY] = ("error", f"Not recorded: {exc}")
        return
    failed = ", ".join(result.failed) or "none"
    st.session_state[RESULT_KEY] = (
        "ok",
        f"Step {step.number} recorded for {step.asset}: {len(result.points)} readings to the historian, "
        f"failed checks: {failed} ({len(result.labels)} labels), audit entries {result.audit_seq}.",
    )


def _step_image(substation: str, step: RouteStep) -> tuple[Path | None, str]:
    """The step's own view when step views exist ([insp-render]'s `render_step`), else the
    substation's latest render; with a caption saying how old it is."""
    try:
        stepview = importlib.import_module("inspection.stepview")
    except ModuleNotFoundError:
        stepview = None
    if stepview is not None and hasattr(stepview, "render_step"):
        try:
            return Path(stepview.render_step(substation, step)), f"step {step.number}: {step.asset}"
        except Exception as exc:  # the latest render stands in, and the caption says why
            note = f"step view unavailable ({type(exc).__name__}: {exc}); "
        else:
            note = ""
    else:
        note = ""
    cfg = data.settings().inspection
    if cfg is None:
        return None, note + "no `inspection` section: nothing is rendered"
    path = Path(cfg.output_dir) / f"{substation}.png"
    if not path.exists():
        return None, note + f"no render of {substation} yet"
    stamp = read_render_stamp(path)
    t = stamp["rendered_ns"] / 1e9 if stamp else path.stat().st_mtime
    age = time.time() - t
    when = datetime.fromtimestamp(t, tz=UTC).strftime("%H:%M:%S UTC")
    return path, f"{note}the substation's latest render, {when} ({age:.0f} s ago)"


def _downloads(substation: str, route: Route) -> None:
    from inspection.routepack import route_pack_html

    settings = data.settings()
    cfg = settings.inspection
    overview = Path(cfg.output_dir) / f"{substation}.png" if cfg is not None else None
    st.download_button(
        "Route pack (HTML, offline)",
        route_pack_html(route, overview=overview),
        file_name=f"route-{substation}-{route.generated.replace(':', '')}.html",
        mime="text/html",
        key="routes.pack",
    )
    if st.button("Prepare GLB for a headset", key="routes.glb.prepare"):
        require(Permission.INSPECT_VIEW)
        from inspection.export import export_glb, gather_live

        assets = settings.assets.get(substation, [])
        live, note = gather_live(settings, assets, substation, data.historian())
        with tempfile.TemporaryDirectory() as tmp:
            path = export_glb(assets, substation, Path(tmp) / f"{substation}.glb", live, note=note)
            st.session_state["routes.glb"] = (substation, path.read_bytes())
    glb = st.session_state.get("routes.glb")
    if glb is not None and glb[0] == substation:
        st.download_button(
            "GLB (glTF 2.0)", glb[1], file_name=f"{substation}.glb", mime="model/gltf-binary", key="routes.glb"
        )


def _viewer(substation: str, step: RouteStep) -> None:
    try:
        from inspection.viewer.server import viewer_url

        url = viewer_url(substation, step.number, asset=step.asset, settings=data.settings())
    except Exception as exc:  # the viewer needs its npm packages; the page goes on without it
        st.info(f"3D viewer not available here: {exc}")
        return
    st.markdown(f"[Open the 3D viewer (WebXR) in a new tab]({url})")
    components.iframe(url, height=460)


def _findings_form(substation: str, route: Route, step: RouteStep) -> None:
    checklist = checklist_for(_asset(substation, step.asset).kind)
    with st.form(f"routes.form.{step.number}"):
        st.markdown(f"**Checklist: {checklist.kind.value}**")
        for c in step.checks:
            cols = st.columns([5, 2, 2])
            cols[0].markdown(c.text)
            if c.compare:
                cols[0].caption("live: " + ", ".join(f"{k} = {v:.4g}" for k, v in c.compare.items()))
            cols[1].radio(
                c.key,
                ["pass", "fail", "n/a"],
                index=None,
                key=f"routes.{step.number}.{c.key}",
                horizontal=True,
                label_visibility="collapsed",
            )
            if c.reading:
                cols[2].number_input(
                    f"{READINGS[c.reading].label} ({c.unit})",
                    value=None,
                    key=f"routes.{step.number}.{c.key}.reading",
                )
        st.text_area("Notes", key=f"routes.{step.number}.notes")
        st.file_uploader(
            "Photos (only their SHA-256 is recorded)",
            accept_multiple_files=True,
            key=f"routes.{step.number}.photos",
        )
        st.form_submit_button("Record step", on_click=_record, args=(substation, route, step), type="primary")


def page() -> None:
    require(Permission.INSPECT_VIEW)
    settings = data.settings()
    st.title("Inspection routes")
    subs = [s for s in settings.assets if settings.assets[s]]
    if not subs:
        st.info("No equipment in assets.yaml: there is nothing to inspect.")
        return
    default = (
        settings.inspection.substation if settings.inspection and settings.inspection.substation in subs else subs[0]
    )
    substation = st.selectbox("Substation", subs, index=subs.index(default), key="routes.substation")
    routes: dict[str, Route] = st.session_state.get(ROUTES_KEY, {})
    st.button("Generate route from live risk", on_click=_generate, args=(substation,), key="routes.generate")
    route = routes.get(substation)
    if route is None:
        st.info(
            "Generate the route: the riskiest equipment first (alarms, anomaly scores, hot-spot ageing, time "
            "since inspection × what a trip would cost, from the twin's N-1), along a short walk."
        )
        return
    st.caption(f"Generated {route.generated} · {len(route.steps)} steps · {route.length_m:.0f} m walk · {route.rule}")
    table = pd.DataFrame(
        [
            {
                "step": s.number,
                "equipment": s.asset,
                "kind": s.kind,
                "state": s.state,
                "tier": s.tier,
                "risk": s.risk,
                "why": s.why[0] if s.why else "",
            }
            for s in route.steps
        ]
    )
    st.dataframe(table, hide_index=True, key="routes.table")
    labels = [f"{s.number}. {s.asset} ({s.state})" for s in route.steps]
    index = min(st.session_state.get(STEP_KEY, 0), len(labels) - 1)
    chosen = st.selectbox("Step", labels, index=index, key=f"routes.stepselect.{substation}")
    step = route.steps[labels.index(chosen)]
    st.subheader(f"Step {step.number}: {step.asset}")
    left, right = st.columns([3, 2])
    image, caption = _step_image(substation, step)
    if image is not None:
        left.image(str(image), caption=caption)
    else:
        left.info(caption)
    right.markdown("**Why it is on the route**")
    right.markdown("\n".join(f"- {w}" for w in step.why))
    if step.values:
        right.dataframe(pd.DataFrame([{"value": k, "live": v} for k, v in step.values.items()]), hide_index=True)
    result = st.session_state.pop(RESULT_KEY, None)
    if result is not None:
        (st.success if result[0] == "ok" else st.error)(result[1])
    if allowed(Permission.INSPECT_RECORD):
        _findings_form(substation, route, step)
    else:
        st.caption("Recording findings needs the technician role (inspect.record).")
    if st.toggle("3D viewer of this step", key="routes.viewer"):
        _viewer(substation, step)
    with st.expander("Downloads"):
        _downloads(substation, route)
