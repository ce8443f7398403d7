"""Real-browser fixtures: one `gridverse demo` (simulator, gateway, twin, detectors, UI) on loopback
for the whole module, its users from `GRIDVERSE_<ROLE>_PASSWORD`, and Debian's Chromium driven by
Playwright through `executable_path` (Playwright's own browser download cannot work offline).

Without Chromium these tests skip on a developer machine and FAIL in CI (`CI=true`):
`scripts/bootstrap --test` installs it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gridverse.auth.demo_users import DEMO_ROLES, password_variable
from gridverse.historian.embedded import EmbeddedHistorian
from gridverse.schema import TWIN_CYCLE
from gridverse.settings import REPO_ROOT, load_settings
from tests.helpers import config_dir
from tests.services import free_port, wait_for

CHROMIUM = Path(os.environ.get("GRIDVERSE_CHROMIUM", "/usr/bin/chromium"))


def password(role: str) -> str:
    """The browser tests' password of the demo user named after `role` (not a default: tests only)."""
    return f"browser-test {role} password"


@dataclass
class Console:
    url: str
    config: Path
    root: Path
    log: Path

    @property
    def settings(self):
        return load_settings(self.config)


def _chromium_or_fail() -> None:
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return
    message = f"Chromium not found at {CHROMIUM}: install Debian's chromium (`bash scripts/bootstrap --test`)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)  # in CI a missing browser is a failure, never a skip
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """Debian's Chromium through Playwright's sync API, for one module (fails in CI when it is
    missing). Not pytest-playwright's session-wide `browser`: a sync Playwright left running marks
    the main thread's event loop as running, and every later test's `asyncio.run()` then fails."""
    from playwright.sync_api import sync_playwright

    _chromium_or_fail()
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")  # stopped after its module: a demo left running starves the rest of the suite
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """`gridverse demo` with its UI on a free loopback port; waits for the first state estimate."""
    _chromium_or_fail()
    root = tmp_path_factory.mktemp("console")
    port = free_port()

    def mutate(doc: dict) -> None:
        doc["ui"] = {**doc.get("ui", {}), "port": port, "address": "127.0.0.1", "refresh_s": 2.0}

    config = config_dir(root, mutate)
    env = {**os.environ, "GRIDVERSE_CONFIG": str(config)}
    env.update({password_variable(r): password(r.value) for r in DEMO_ROLES})
    gridverse = shutil.which("gridverse", path=str(Path(sys.executable).parent)) or "gridverse"
    log = root / "demo.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [gridverse, "--config", str(config), "demo", "--log-level", "WARNING"],
            cwd=root,  # anything left at a relative var/ path lands here, not in the checkout
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    settings = load_settings(config)
    try:
        try:
            wait_for(lambda: urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).status == 200, "ui", 150)
            wait_for(lambda: _has_estimate(settings), "first estimate", 150)
        except TimeoutError:
            pytest.fail(f"gridverse demo did not come up (UI {url}, estimate):\n{log.read_text()[-3000:]}")
        yield Console(url, config, root, log)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _has_estimate(settings) -> bool:
    if not Path(settings.historian.path).exists():
        return False
    h = EmbeddedHistorian(settings.historian.path)
    try:
        return bool(h.latest(TWIN_CYCLE, tags={"site": settings.site.name}, start_ns=time.time_ns() - int(60e9)))
    finally:
        h.close()


def sign_in(browser, console: Console, user: str, path: str = "", pw: str | None = None):
    """A new browser context signed in as `user` at /<path>; returns the page."""
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(f"{console.url}/{path}")
    page.get_by_role("textbox", name="User name").fill(user)
    page.get_by_role("textbox", name="Password").fill(pw or password(user))
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text(f"Signed in as {user}").wait_for()
    return page


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
