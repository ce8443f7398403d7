"""SIGTERM (systemd, Docker) and Ctrl-C (SIGINT to the terminal's process group) stop every
process of the stack, the Streamlit UI and the render process included, within 5 s and with exit
code 0; the UI binds loopback, reads the `--config` it was given, and dies with a killed parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.helpers import config_dir
from tests.services import free_port, port_open, wait_for

STOP_WITHIN_S = 5.0


def _start(tmp: Path, *args: str, mutate=None) -> tuple[subprocess.Popen[bytes], Path, int]:
    ui_port = free_port()

    def change(doc: dict) -> None:
        doc["ui"]["port"] = ui_port
        if mutate is not None:
            mutate(doc)

    config = config_dir(tmp, change)
    log = tmp / "stack.log"
    cmd = [sys.executable, "-m", "gridverse.cli", "--config", str(config), *args]
    # its own session, as a shell gives a foreground job: SIGINT to the group is a terminal's Ctrl-C
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=tmp, start_new_session=True)
    return proc, config, ui_port


def _family(pid: int) -> list[psutil.Process]:
    """The process and every descendant (the UI runs in a process group of its own)."""
    parent = psutil.Process(pid)
    return [parent, *parent.children(recursive=True)]


def _stop_and_time(proc: subprocess.Popen[bytes], family: list[psutil.Process], how: str) -> float:
    started = time.monotonic()
    if how == "SIGTERM":
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGINT)
    try:
        code: int | None = proc.wait(STOP_WITHIN_S + 5)
    except subprocess.TimeoutExpired:
        code = None
    elapsed = time.monotonic() - started
    gone, alive = psutil.wait_procs(family, timeout=max(0.1, STOP_WITHIN_S - elapsed))
    for p in alive:  # never leave a process behind, whatever the outcome
        p.kill()
    log = Path(proc.args[proc.args.index("--config") + 1]).parents[1] / "stack.log"
    assert not alive, f"still running after {how}: {[p.name() for p in alive]}\n{log.read_text()[-3000:]}"
    assert code == 0, f"exit code {code} after {how}\n{log.read_text()[-3000:]}"
    return time.monotonic() - started


def _ui_child(proc: subprocess.Popen[bytes], ui_port: int, timeout: float = 60) -> psutil.Process:
    wait_for(lambda: port_open(ui_port) or proc.poll() is not None, "the Streamlit UI", timeout=timeout)
    assert proc.poll() is None, f"the stack exited with code {proc.returncode}"
    (ui,) = [p for p in _family(proc.pid)[1:] if "streamlit" in " ".join(p.cmdline())]
    return ui


def test_sigterm_stops_the_ui_it_started_which_binds_loopback_and_reads_the_given_config(tmp_path: Path) -> None:
    proc, config, ui_port = _start(tmp_path, "run", "ui")
    try:
        ui = _ui_child(proc, ui_port)
        cmdline = " ".join(ui.cmdline())
        assert "--server.address=127.0.0.1" in cmdline
        assert "--client.toolbarMode=minimal" in cmdline  # no Deploy button
        assert ui.environ()["GRIDVERSE_CONFIG"] == str(config.resolve())  # what ui/data.py loads
        assert ui.cmdline()[-2:] == ["--config", str(config.resolve())]  # what ui/app.py reads
        listening = [c.laddr for c in ui.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
        assert listening and {a.ip for a in listening if a.port == ui_port} == {"127.0.0.1"}
        family = _family(proc.pid)
    except BaseException:
        proc.kill()
        raise
    assert _stop_and_time(proc, family, "SIGTERM") < STOP_WITHIN_S


def test_the_ui_dies_with_its_parent_even_when_the_parent_is_killed(tmp_path: Path) -> None:
    proc, _config, ui_port = _start(tmp_path, "run", "ui")
    try:
        ui = _ui_child(proc, ui_port)
    finally:
        proc.kill()  # SIGKILL: no handler runs, only the child's own parent-death watch helps
        proc.wait(10)
    gone, alive = psutil.wait_procs([ui], timeout=STOP_WITHIN_S)
    for p in alive:
        p.kill()
    assert not alive, "the UI outlived its killed parent"


def test_ctrl_c_stops_the_demo_and_every_process_it_started_within_5_s(tmp_path: Path) -> None:
    """The whole demo (simulator, embedded broker, gateway, twin, detectors, the render process,
    the UI). Ctrl-C took 33 s: the terminal's SIGINT killed the render process too, and the stack
    waited 30 s for the render thread, which waited for an answer that would never come."""

    def quick(doc: dict) -> None:
        doc["mqtt"]["host"] = None  # the demo's embedded broker, on the test's free port
        doc["inspection"]["every_s"] = 2

    proc, _config, ui_port = _start(tmp_path, "demo", "--log-level", "INFO", mutate=quick)
    log = tmp_path / "stack.log"
    try:
        _ui_child(proc, ui_port, timeout=150)  # the UI starts last, once every part runs
        family = _family(proc.pid)
        assert any("multiprocessing.spawn" in " ".join(p.cmdline()) for p in family), "the render process runs"
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert _stop_and_time(proc, family, "SIGINT") < STOP_WITHIN_S
    text = log.read_text()
    assert "SIGINT received: stopping" in text and "Traceback" not in text


def test_sigterm_stops_the_render_process_and_the_ui(tmp_path: Path) -> None:
    metrics_port = free_port()
    proc, _config, ui_port = _start(
        tmp_path, "run", "inspection", "ui", mutate=lambda d: d["gateway"].update(metrics_port=metrics_port)
    )
    try:
        _ui_child(proc, ui_port, timeout=120)
        family = _family(proc.pid)
        assert any("multiprocessing.spawn" in " ".join(p.cmdline()) for p in family), "the render process runs"
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert _stop_and_time(proc, family, "SIGTERM") < STOP_WITHIN_S
    assert "SIGTERM received: stopping" in (tmp_path / "stack.log").read_text()


def test_a_ui_that_dies_is_reported_on_health_and_started_again(tmp_path: Path) -> None:
    """An operator's console must not stay dark because Streamlit crashed (or the OOM killer took
    it): /health names it at once, the stack starts a new one on the same port."""
    import json
    import urllib.request

    metrics_port = free_port()
    proc, _config, ui_port = _start(
        tmp_path, "run", "ui", mutate=lambda d: d["gateway"].update(metrics_port=metrics_port)
    )

    def health() -> dict:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/health", timeout=2) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:  # 503 while failing, with the same body
            return json.loads(exc.read())

    try:
        first = _ui_child(proc, ui_port, timeout=120)
        wait_for(lambda: health().get("status") == "ok", "a healthy stack", timeout=30)
        first.kill()
        first.wait(10)
        said: list[str] = []

        def reported() -> bool:
            said[:] = health()["problems"]
            return any("ui worker streamlit" in p and "exited with code -9" in p for p in said)

        wait_for(reported, "/health to name the dead UI", timeout=10)
        wait_for(lambda: port_open(ui_port), "a new UI on the same port", timeout=120)
        second = _ui_child(proc, ui_port)
        assert second.pid != first.pid
        wait_for(lambda: health().get("status") == "ok", "the stack healthy again", timeout=60)

        def logged() -> list[str]:
            return [line for line in (tmp_path / "stack.log").read_text().splitlines() if "ui worker streamlit" in line]

        wait_for(lambda: "is up again" in logged()[-1], "the watchdog to log the UI up again", timeout=10)
        down, up = logged()  # once down, once up: no log spam
        assert "is down" in down and "Streamlit exited with code -9" in down and "restarting it" in down
        family = _family(proc.pid)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert _stop_and_time(proc, family, "SIGTERM") < STOP_WITHIN_S
