"""The panoramic view in a real browser: Debian's Chromium (Playwright, `executable_path`) against a
Streamlit server started here on loopback, for the demo grid (SimBench 1-MV-rural--1-sw, 99 buses)
and the 10,458-bus SimBench 1-MVLV-urban-all-0-sw.

    .venv/bin/python bench/ui_panorama.py [--quick] [--repeats N]

Each grid's historian holds a synthetic twin cycle (ui.panorama.synthetic: every bus and branch
has a value, a few outside their limits), renewed every 2 s as the twin would. Measured:
- `demo_grid_s`, `large_grid_s`: from a click on "Panoramic view" in the navigation until the
  figure, every bus and line of the grid, is drawn in the browser (the plot's `data-drawn`
  attribute is set after `Plotly.react` resolves); the network is already loaded in the server
  (its first load is reported apart, as `*_first_s`).
- `refresh_s` (demo) and `large_refresh_s`: one live refresh, from the start of the fragment's run
  on the server (read, classify, build the figure) until the browser has drawn it.
Prints progress on stderr and one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gridverse.auth.roles import Role
from gridverse.auth.users import UserStore
from gridverse.historian.embedded import EmbeddedHistorian
from gridverse.settings import REPO_ROOT, load_settings
from tests.helpers import config_dir
from tests.services import free_port, wait_for
from ui.data import _network
from ui.panorama.synthetic import write_synthetic_cycle

GRIDS = {"demo": "1-MV-rural--1-sw", "large": "1-MVLV-urban-all-0-sw"}
USER, PASSWORD = "bench", "bench password, not a default"
CHROMIUM = "/usr/bin/chromium"
FRAME = "iframe[title*=panorama]"


def say(msg: str) -> None:
    print(f"[ui_panorama] {msg}", file=sys.stderr, flush=True)


class Site:
    """A config for one grid, a historian fed with synthetic cycles, and a Streamlit server."""

    def __init__(self, root: Path, code: str) -> None:
        def mutate(doc: dict) -> None:
            doc["site"]["network"] = {"simbench_code": code}
            doc["auth"] = {"users_file": str(root / "users.yaml"), "argon2_time_cost": 1, "argon2_memory_kib": 1024}
            doc["ui"] = {**doc.get("ui", {}), "refresh_s": 2.0}

        root.mkdir(parents=True)
        self.config = config_dir(root, mutate)
        self.settings = load_settings(self.config)
        UserStore(self.settings.auth).add(USER, Role.VIEWER, PASSWORD)
        t0 = time.perf_counter()
        self.net = _network(self.settings.site.network)
        say(f"{code}: {len(self.net.bus)} buses, {len(self.net.line)} lines loaded in {time.perf_counter() - t0:.1f} s")
        self.historian = EmbeddedHistorian(self.settings.historian.path)
        self._feed(1)
        self._stop = threading.Event()
        self._feeder = threading.Thread(target=self._run_feed, daemon=True)
        self._feeder.start()
        self.port = free_port()
        app = str(REPO_ROOT / "ui" / "app.py")
        cmd = [sys.executable, "-m", "streamlit", "run", app, "--server.port", str(self.port)]
        cmd += ["--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"]
        self.log = root / "streamlit.log"
        env = {**os.environ, "GRIDVERSE_CONFIG": str(self.config)}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out, cwd=REPO_ROOT)
        health = f"http://127.0.0.1:{self.port}/_stcore/health"
        wait_for(lambda: urllib.request.urlopen(health, timeout=1).status == 200, "streamlit", timeout=120)

    def _feed(self, seed: int) -> None:
        write_synthetic_cycle(self.historian, self.net, self.settings.site.name, seed=seed)

    def _run_feed(self) -> None:
        seed = 2
        while not self._stop.wait(2.0):
            self._feed(seed)
            seed += 1

    def close(self) -> None:
        self._stop.set()
        self._feeder.join(10)
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.historian.close()


def _drawn(page, timeout_s: float) -> tuple[str, int]:
    """Wait until the panorama's plot is drawn; (stamp, drawn at ms)."""
    plot = page.frame_locator(FRAME).locator("#plot[data-drawn]")
    plot.wait_for(timeout=timeout_s * 1000)
    return plot.get_attribute("data-drawn") or "", int(plot.get_attribute("data-drawn-ms") or 0)


def measure(site: Site, browser, repeats: int, refreshes: int) -> dict:
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    page.goto(f"http://127.0.0.1:{site.port}/twin")
    page.get_by_role("textbox", name="User name").fill(USER)
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Grid twin").wait_for(timeout=120_000)

    def open_panorama(timeout_s: float) -> float:
        page.get_by_role("link", name="Grid twin").click()
        page.get_by_role("heading", name="Grid twin").wait_for(timeout=120_000)
        page.frame_locator(FRAME).locator("#plot").wait_for(state="detached", timeout=30_000)
        t0 = time.perf_counter()
        page.get_by_role("link", name="Panoramic view").click()
        _drawn(page, timeout_s)
        return time.perf_counter() - t0

    first = open_panorama(300)
    say(f"first view (network loaded by the server): {first:.2f} s")
    times = [open_panorama(60) for _ in range(repeats)]
    say(f"navigation → drawn: {', '.join(f'{t:.2f}' for t in times)} s")
    refresh: list[float] = []
    last, deadline = _drawn(page, 10)[0], time.time() + 20 * refreshes
    while len(refresh) < refreshes and time.time() < deadline:
        stamp, drawn_ms = _drawn(page, 10)
        if stamp != last and "@" in stamp:
            refresh.append((drawn_ms - int(stamp.split("@")[1])) / 1000)
            last = stamp
        time.sleep(0.05)
    say(f"refresh (run start → drawn): {', '.join(f'{t:.2f}' for t in refresh)} s")
    shot = Path(tempfile.gettempdir()) / f"ui_panorama_{len(site.net.bus)}.png"
    page.screenshot(path=str(shot))
    page.close()
    return {
        "first_s": round(first, 3),
        "drawn_s": round(statistics.median(times), 3),
        "refresh_s": round(statistics.median(refresh), 3) if refresh else None,
        "screenshot": str(shot),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (under two minutes)")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    refreshes = 3 if args.quick else 8
    from playwright.sync_api import sync_playwright

    out: dict = {"quick": args.quick, "repeats": repeats, "browser": CHROMIUM, "load_avg_1min": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="ui_panorama-") as tmp, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM)
        try:
            for name, code in GRIDS.items():
                site = Site(Path(tmp) / name, code)
                try:
                    result = measure(site, browser, repeats, refreshes)
                finally:
                    site.close()
                out[f"{name}_buses"] = len(site.net.bus)
                out[f"{name}_grid_s"] = result["drawn_s"]
                out[f"{name}_first_s"] = result["first_s"]
                out["refresh_s" if name == "demo" else f"{name}_refresh_s"] = result["refresh_s"]
                out[f"{name}_screenshot"] = result["screenshot"]
        finally:
            browser.close()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
