"""The UI's pages: on a real Streamlit server a signed-out browser gets only the sign-in form at
every URL, and once signed in every page in `ui.views.PAGES` opens at its own URL; each page
renders the data of a small historian (AppTest, signed in as an engineer)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from gridverse.auth.roles import ROLE_PERMISSIONS, Role
from gridverse.auth.users import UserStore
from gridverse.historian.embedded import EmbeddedHistorian
from gridverse.points import Record
from gridverse.schema import (
    ALARM,
    LOADING_ALARM_PERCENT,
    LOADING_WARNING_PERCENT,
    TWIN_BRANCH,
    TWIN_BUS,
    TWIN_CYCLE,
    TWIN_OBSERVABILITY,
    TWIN_RESIDUAL,
)
from gridverse.settings import REPO_ROOT, load_settings
from tests.helpers import config_dir
from tests.services import free_port, wait_for
from ui import data, signin
from ui.views import PAGES, PageSpec

APP = REPO_ROOT / "ui" / "app.py"
LOADINGS = {0: 60.0, 12: 85.0, 21: 20.0}  # line index → percent; the other lines 10 %
PASSWORD = "a test password, not a default"  # every role's user (named after the role) has it


def fast_auth(doc: dict) -> None:
    """Users in the test's folder, hashed with cheap Argon2 parameters (sign-ins in milliseconds)."""
    users = Path(doc["historian"]["path"]).parent / "users.yaml"
    doc["auth"] = {"users_file": str(users), "argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1}


def add_role_users(config: Path) -> None:
    """One user per role, named after it, password PASSWORD."""
    store = UserStore(load_settings(config).auth)
    for role in Role:
        store.add(role.value, role, PASSWORD)


@dataclass
class Site:
    config: Path
    site: str
    buses: int
    lines: int


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The demo configuration with a historian holding one twin cycle (estimates, loadings,
    residuals, an observability note), an active alarm, and a substation render on disk."""
    tmp = tmp_path_factory.mktemp("ui")
    config = config_dir(tmp, fast_auth)
    add_role_users(config)
    settings = load_settings(config)
    st.cache_resource.clear()  # the UI caches settings, historian and network per process
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRIDVERSE_CONFIG", str(config))
        buses, lines = data.network_geometry()  # loaded once here, reused by the pages
    name, now = settings.site.name, time.time_ns()
    tag = {"site": name}
    cycle: dict[str, float | int | str | bool] = {
        "engine": "sparse",
        "estimate_s": 0.042,
        "objective": 12.0,
        "chi2_threshold": 30.0,
        "chi2_alarm": 0,
        "suspects": 1,
        "unobservable_buses": 2,
    }
    records = [Record(TWIN_CYCLE, tag, cycle, now)]
    records += [
        Record(TWIN_BUS, {**tag, "bus": str(b)}, {"vm_pu": 0.97 + 0.06 * i / (len(buses) - 1), "va_degree": 0.0}, now)
        for i, b in enumerate(buses.index)
    ]
    records += [
        Record(TWIN_BRANCH, {**tag, "kind": "line", "index": str(i)}, {"loading_percent": LOADINGS.get(i, 10.0)}, now)
        for i in lines.index
    ]
    records += [
        Record(
            TWIN_RESIDUAL,
            {**tag, "device": device, "point": "MMXU1.PPV"},
            {"normalised": r, "residual_sigma": r, "measured": 0.4, "suspect": int(abs(r) > 4)},
            now,
        )
        for device, r in (("RTU45", 7.5), ("RTU60", -1.2), ("RTU80", 0.3))
    ]
    records.append(Record(TWIN_OBSERVABILITY, tag, {"message": "buses 97, 98 are unobservable from telemetry"}, now))
    alarm_tags = {"substation": "primary", "device": "T2-oil", "point": "YPTR1.TmpOil"}
    records.append(
        Record(
            ALARM,
            {**tag, **alarm_tags, "rule": "limit", "severity": "critical"},
            {"message": "YPTR1.TmpOil = 151.0 degC above 95.0", "active": 1, "value": 151.0},
            now,
        )
    )
    historian = EmbeddedHistorian(settings.historian.path)
    try:
        historian.write(records)
    finally:
        historian.close()
    assert settings.inspection is not None
    render = Path(settings.inspection.output_dir) / f"{settings.inspection.substation}.png"
    render.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), (40, 160, 60)).save(render)
    yield Site(config, name, len(buses), len(lines))
    st.cache_resource.clear()


def _app(spec: PageSpec, user: str = "engineer") -> AppTest:
    """The page alone, with `user` signed in (pages refuse to draw for nobody)."""
    at = AppTest.from_function(_render_page, args=(spec.module, spec.function), default_timeout=120)
    at.session_state[signin.TOKEN_KEY] = signin.start_session(user)
    return at


def _render_page(module: str, function: str) -> None:
    from gridverse.auth.roles import Permission
    from ui.views import PageSpec

    PageSpec("", "", module, "", "", function, permission=Permission.GRID_VIEW).render()


@pytest.fixture
def env(site: Site, monkeypatch: pytest.MonkeyPatch) -> Site:
    monkeypatch.setenv("GRIDVERSE_CONFIG", str(site.config))
    return site


def test_pages_are_listed_once_with_explicit_url_paths() -> None:
    paths = [p.url_path for p in PAGES]
    assert paths[:3] == ["overview", "twin", "substation"] and len(set(paths)) == len(paths)
    assert not {"start", "signin", "nothing"} & set(paths), "the app's own URLs"
    assert len({p.title for p in PAGES}) == len(PAGES) and all(p.icon and p.section for p in PAGES)
    assert all(p.permission in {q for r in Role for q in ROLE_PERMISSIONS[r]} for p in PAGES), "some role sees each"


def test_the_app_opens_the_first_page_at_its_root_after_sign_in(env: Site) -> None:
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    assert not at.exception
    assert at.title[0].value == "gridverse — sign in" and not at.metric, "nothing of the grid before sign-in"
    at.text_input(key="signin.user").input("operator")
    at.text_input(key="signin.password").input(PASSWORD)
    at.button(key="FormSubmitter:signin-Sign in").click().run()
    assert not at.exception
    assert at.title[0].value == f"Panoramic view — {env.site}"
    assert at.sidebar.markdown[0].value == "Signed in as **operator** (operator)"


def test_overview_shows_the_estimate_loadings_and_alarms(env: Site) -> None:
    at = _app(PAGES[0]).run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["buses de-energised"] == "0"
    assert metrics["lowest voltage"] == "0.970 pu" and metrics["highest voltage"] == "1.030 pu"
    assert metrics["highest loading"] == "85 %"
    # ISA-101: every value is inside the band and below 90 % of the loading limit, so nothing is coloured
    assert metrics["buses outside band"] == "0" and metrics["branches near/over limit"] == "0"
    assert "Alarms" in [h.value for h in at.subheader]  # from the alarm store (never resurrected history)
    spec = json.loads(json.loads(at.get("component_instance")[0].proto.json_args)["spec"])
    names = [t.get("name", "") for t in spec["data"]]
    assert all(t["type"] == "scattergl" for t in spec["data"]) and len(names) < 15  # one trace per class
    assert f"bus in band ({env.buses})" in names and "line de-energised / open (6)" in names  # 6 open ties


def test_twin_page_shows_the_cycle_residuals_and_notes(env: Site) -> None:
    at = _app(PAGES[1]).run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Engine"] == "sparse" and metrics["Estimate"] == "42 ms"
    assert metrics["Chi-square (J / limit)"] == "12 / 30" and metrics["Suspect readings"] == "1"
    assert metrics["Buses unobservable from telemetry"] == "2"
    residuals = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert sorted(y for t in residuals["data"] for y in t["y"]) == [
        f"{d}/MMXU1.PPV" for d in ("RTU45", "RTU60", "RTU80")
    ]
    assert [w.value for w in at.warning] == ["buses 97, 98 are unobservable from telemetry"]
    assert at.button[0].label == "Run N-1"


def test_substation_page_shows_the_render_and_its_assets(env: Site) -> None:
    at = _app(PAGES[2]).run()
    assert not at.exception
    assert at.title[0].value == "Substation primary"
    assert at.get("image"), "the render on disk is shown"
    caption = at.get("image")[0].proto.imgs[0].caption
    assert f"amber loaded ≥ {LOADING_WARNING_PERCENT:.0f} %" in caption
    assert f"loaded ≥ {LOADING_ALARM_PERCENT:.0f} %" in caption
    assets = at.dataframe[0].value
    assert len(assets) == 44 and "PRIM/T2/YPTR1" in set(assets.asset)


@dataclass
class Run:
    """What a browser got from one whole run of the script."""

    not_found: bool
    heading: str
    listed: list[str]  # url paths the navigation shows (not hidden)
    widgets: dict[str, str]  # widget label → id
    toolbar: str = ""  # the toolbar mode the server told the browser
    live: list[str] = field(default_factory=list)  # fragments the browser is asked to rerun on a timer


class Tab:
    """One browser tab: a Streamlit session over its websocket (session state lives as long as it)."""

    def __init__(self, ws: object) -> None:
        self.ws = ws
        self.received = bytearray()  # every byte the server sent this tab

    async def run(self, page_name: str, widgets: list | None = None) -> Run:
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
        from streamlit.proto.Navigation_pb2 import Navigation
        from streamlit.proto.NewSession_pb2 import Config

        request = BackMsg()
        request.rerun_script.page_name = page_name
        for state in widgets or []:
            request.rerun_script.widget_states.widgets.append(state)
        await self.ws.send(request.SerializeToString())  # type: ignore[attr-defined]
        not_found, heading, listed, ids, toolbar, live = False, "", [], {}, "", []
        while True:  # to the end of a run: "page not found" may come before or after a heading
            msg = ForwardMsg()
            raw = await asyncio.wait_for(self.ws.recv(), 120)  # type: ignore[attr-defined]
            self.received += raw
            msg.ParseFromString(raw)
            kind = msg.WhichOneof("type")
            if kind == "new_session":  # a run starts (after a rerun, what the cut-short run drew is gone)
                heading, listed, ids = "", [], {}
                toolbar = Config.ToolbarMode.Name(msg.new_session.config.toolbar_mode)
            elif kind == "page_not_found":
                not_found = True
            elif kind == "auto_rerun":
                live.append(msg.auto_rerun.fragment_id)
            elif kind == "navigation":
                shown = msg.navigation.position != Navigation.HIDDEN
                listed = [p.url_pathname for p in msg.navigation.app_pages if shown and not p.is_hidden]
            elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                element = msg.delta.new_element
                what = element.WhichOneof("type")
                if what == "heading" and not heading:
                    heading = element.heading.body
                elif what in ("text_input", "button"):
                    widget = getattr(element, what)
                    ids[widget.label] = widget.id
            elif (  # a whole run of the page (not a rerun cut short, not a fragment's run)
                kind == "script_finished"
                and msg.script_finished == ForwardMsg.FINISHED_SUCCESSFULLY
                and (not_found or heading)
            ):
                return Run(not_found, "" if not_found else heading, listed, ids, toolbar, live)

    async def refresh(self, page_name: str, fragment_id: str) -> str:
        """What the browser's timer does for a live panel: rerun one fragment. Returns "fragment"
        when only the fragment ran, or the heading of the whole-app run it turned into."""
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        request = BackMsg()
        request.rerun_script.page_name = page_name
        request.rerun_script.fragment_id = fragment_id
        request.rerun_script.is_auto_rerun = True
        await self.ws.send(request.SerializeToString())  # type: ignore[attr-defined]
        heading = ""
        while True:
            msg = ForwardMsg()
            raw = await asyncio.wait_for(self.ws.recv(), 120)  # type: ignore[attr-defined]
            self.received += raw
            msg.ParseFromString(raw)
            kind = msg.WhichOneof("type")
            if kind == "delta" and msg.delta.new_element.WhichOneof("type") == "heading" and not heading:
                heading = msg.delta.new_element.heading.body
            elif kind == "script_finished":
                if msg.script_finished == ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY:
                    return "fragment"
                if msg.script_finished == ForwardMsg.FINISHED_SUCCESSFULLY and heading:
                    return heading

    async def sign_in(self, page_name: str, user: str, password: str) -> Run:
        """Fill in and submit the sign-in form shown at `page_name`, as the browser does."""
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        form = await self.run(page_name)
        assert form.heading == "gridverse — sign in", form
        states = [
            WidgetState(id=form.widgets["User name"], string_value=user),
            WidgetState(id=form.widgets["Password"], string_value=password),
            WidgetState(id=form.widgets["Sign in"], trigger_value=True),
        ]
        return await self.run(page_name, states)


def _browse(port: int, visit: object) -> object:
    """Run `visit(tab)` (a coroutine function) in a fresh browser session."""
    import websockets

    async def main() -> object:
        url = f"ws://127.0.0.1:{port}/_stcore/stream"
        async with websockets.connect(url, subprotocols=["streamlit"], max_size=None) as ws:  # type: ignore[list-item]
            return await visit(Tab(ws))  # type: ignore[operator]

    return asyncio.run(main())


@contextlib.contextmanager
def _streamlit(config: Path, log: Path, **env: str) -> Iterator[int]:
    """The app on a real Streamlit server, started as a user would by hand (its address, toolbar
    and other settings from ui/.streamlit/config.toml); yields its port."""
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env={**os.environ, "GRIDVERSE_CONFIG": str(config), **env}, stdout=out, stderr=out)
    try:
        health = f"http://127.0.0.1:{port}/_stcore/health"
        try:
            wait_for(lambda: urllib.request.urlopen(health, timeout=1).status == 200, "streamlit", timeout=120)
        except TimeoutError:
            pytest.fail(f"streamlit did not answer on port {port} within 120 s:\n{log.read_text()[-2000:]}")
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


SERVER_LOG: list[Path] = []  # the module's server log, read by the last test


@pytest.fixture(scope="module")
def server(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    log = tmp_path_factory.mktemp("streamlit") / "streamlit.log"
    SERVER_LOG.append(log)
    with _streamlit(site.config, log) as port:
        yield port


def _listening_addresses(port: int) -> set[str]:
    """The local addresses with a TCP socket listening on `port` (Linux /proc/net/tcp, tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_the_ui_binds_loopback_and_hides_the_deploy_button(server: int) -> None:
    """Started without an address it listens on 127.0.0.1 only, and tells browsers to show no
    Deploy button and no developer menu (toolbar mode MINIMAL), as the stack's command line does."""
    assert _listening_addresses(server) == {"0100007F"}, "127.0.0.1 only, not 0.0.0.0 or ::"

    async def visit(tab: Tab) -> Run:
        return await tab.run("")

    assert _browse(server, visit).toolbar == "MINIMAL"  # type: ignore[union-attr]


def test_signed_out_every_url_shows_only_the_sign_in_form(server: int) -> None:
    """No page without a session: whatever URL a browser opens, it gets the form and no navigation."""

    async def visit(tab: Tab) -> list[Run]:
        return [await tab.run(path) for path in ["", *(p.url_path for p in PAGES), "no-such-page"]]

    *known, unknown = _browse(server, visit)  # type: ignore[misc]
    for run in known:
        assert run.heading == "gridverse — sign in" and run.listed == [], run
        assert set(run.widgets) == {"User name", "Password", "Sign in"}, "nothing but the form"
    assert unknown.not_found and set(unknown.widgets) == {"User name", "Password", "Sign in"}


def test_every_url_path_opens_its_page_on_a_real_server_after_sign_in(server: int) -> None:
    """`/overview` used to answer "Page not found": Streamlit serves its default page only at `/`.
    A deep link survives the sign-in: the form shown at /twin opens the twin page once submitted."""
    engineer = {p.url_path for p in PAGES if p.permission in ROLE_PERMISSIONS[Role.ENGINEER]}

    async def visit(tab: Tab) -> tuple[Run, Run, dict[str, Run], Run]:
        first = await tab.sign_in("twin", "engineer", PASSWORD)
        unknown = await tab.run("no-such-page")
        pages = {p.url_path: await tab.run(p.url_path) for p in PAGES if p.url_path in engineer}
        return first, unknown, pages, await tab.run("")

    first, unknown, pages, root = _browse(server, visit)  # type: ignore[misc]
    assert first.heading.startswith("Grid twin") and set(first.listed) == engineer
    for path, run in pages.items():
        assert not run.not_found and run.heading not in ("", "gridverse — sign in"), (path, run)
    assert len({run.heading for run in pages.values()}) == len(pages), "each URL opens its own page"
    assert pages["overview"].heading.startswith(PAGES[0].title)
    assert not root.not_found and root.heading.startswith(PAGES[0].title), "the root opens the first page"
    assert unknown.not_found, "an unknown path is reported, so the check above can fail"


def test_a_page_outside_the_role_is_not_served(server: int) -> None:
    """A security auditor who types /overview gets 'page not found', not the grid."""

    async def visit(tab: Tab) -> tuple[Run, Run]:
        return await tab.sign_in("", "secaud", PASSWORD), await tab.run("overview")

    first, overview = _browse(server, visit)  # type: ignore[misc]
    assert "overview" not in first.listed and overview.not_found


def test_no_password_or_hash_reaches_a_page_or_the_log(site: Site, server: int) -> None:
    """After right and wrong passwords, neither they nor a hash is in anything the browser got or
    in the server's log."""
    wrong = "a wrong password for the log test"

    async def visit(tab: Tab) -> bytes:
        refused = await tab.sign_in("overview", "viewer", wrong)
        assert refused.heading == "gridverse — sign in"
        assert (await tab.sign_in("overview", "viewer", PASSWORD)).heading.startswith(PAGES[0].title)
        return bytes(tab.received)

    received = _browse(server, visit)
    assert isinstance(received, bytes) and b"Sign-in refused" in received, "the check sees the pages' text"
    log = SERVER_LOG[0].read_text()
    assert "sign-in refused for 'viewer'" in log, "the check sees the sign-in log"
    for text in (received, log.encode()):
        assert PASSWORD.encode() not in text and wrong.encode() not in text and b"$argon2" not in text


def test_a_live_panel_does_not_keep_an_idle_session_and_ends_with_it(site: Site, tmp_path: Path) -> None:
    """The twin page's live panel reruns itself on the browser's timer. Those reruns do not count
    as use (else refreshing every second would keep the session forever), and once the idle limit
    has passed the next one turns into the sign-in form."""
    idle_s = 10.0
    with _streamlit(site.config, tmp_path / "streamlit.log", GRIDVERSE_AUTH__IDLE_TIMEOUT_S=str(idle_s)) as port:

        async def visit(tab: Tab) -> list[tuple[float, str]]:
            start = time.monotonic()  # the session's last use is the page's run, after this
            page = await tab.sign_in("twin", "operator", PASSWORD)
            assert page.heading.startswith("Grid twin") and page.live, page
            seen: list[tuple[float, str]] = []
            signed_in = time.monotonic()  # the last use was before this
            while time.monotonic() - signed_in < idle_s + 10:
                await asyncio.sleep(1.0)
                seen.append((time.monotonic() - start, await tab.refresh("twin", page.live[0])))
                if seen[-1][1] != "fragment":
                    break
            return seen

        seen = _browse(port, visit)
    assert [what for _, what in seen[:2]] == ["fragment", "fragment"], seen
    assert seen[-1][1] == "gridverse — sign in" and seen[-1][0] >= idle_s, seen
    assert all(what == "fragment" for _, what in seen[:-1]), seen
