"""A site with only a network (no Modbus RTUs, sensors, inspection section or assets) runs the twin."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from gridverse.settings import REPO_ROOT, load_settings
from tests.helpers import config_dir


def test_twin_runs_on_a_site_without_optional_sections(tmp_path: Path) -> None:
    def mutate(d: dict) -> None:
        d["site"] = {"name": "bare"}
        del d["inspection"]
        d["simulator"]["faults"] = []
        d["twin"]["interval_s"] = 0.5

    main = config_dir(tmp_path, mutate)
    (main.parent / "assets.yaml").unlink()
    settings = load_settings(main, environ={})
    assert settings.site.substations == [] and settings.inspection is None

    log = tmp_path / "twin.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gridverse.cli", "--config", str(main), "run", "twin", "--log-level", "INFO"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
    try:
        deadline = time.monotonic() + 90  # loading the SimBench grid takes seconds on a busy machine
        while "gridmodel.twin" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2)  # a few more cycles
        assert proc.poll() is None, log.read_text()[-3000:]
        assert "gridmodel.twin" in log.read_text(), "the twin ran at least one cycle"
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert code == 0, text[-3000:]


def _substation_page() -> None:
    from ui.views.substation import page

    page()


def test_substation_page_without_an_inspection_section_says_so(tmp_path: Path, monkeypatch) -> None:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from gridverse.auth.roles import Role
    from gridverse.auth.users import UserStore
    from gridverse.settings import load_settings
    from ui import signin

    main = config_dir(tmp_path, lambda d: d.pop("inspection"))
    monkeypatch.setenv("GRIDVERSE_CONFIG", str(main))
    st.cache_resource.clear()  # the UI caches its settings per process
    try:
        UserStore(load_settings(main).auth).add("technician", Role.TECHNICIAN, "a technician's long password")
        at = AppTest.from_function(_substation_page, default_timeout=60)
        at.session_state[signin.TOKEN_KEY] = signin.start_session("technician")  # pages draw nothing for nobody
        at.run()
        assert not at.exception
        assert "no `inspection` section" in at.info[0].value
    finally:
        st.cache_resource.clear()
