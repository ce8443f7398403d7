"""The browser/WebXR viewer is served from loopback, nothing from a CDN: the page, model-viewer
(from npm, installed by the bootstrap) and each substation's live GLB answer HTTP 200; the page
names no http(s) URL; in Chromium, every request the page makes stays on this server and the
model loads."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridverse.settings import load_settings
from inspection.viewer.server import MODEL_VIEWER_JS, ViewerServer, viewer_url
from tests.helpers import config_dir
from tests.services import free_port, require_binary, unavailable

URL = re.compile(r"https?://", re.IGNORECASE)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ViewerServer]:
    if not MODEL_VIEWER_JS.is_file():
        unavailable(f"{MODEL_VIEWER_JS} missing: npm ci --prefix inspection/viewer (scripts/bootstrap)")
    port = free_port()
    settings = load_settings(config_dir(tmp_path_factory.mktemp("viewer"), lambda d: _port(d, port)))
    srv = ViewerServer(settings, "127.0.0.1", port).start()
    yield srv
    srv.stop()


def _port(doc: dict, port: int) -> None:
    doc["inspection"]["viewer_port"] = port


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def test_page_and_model_viewer_are_served_from_loopback_without_a_cdn(server: ViewerServer) -> None:
    assert server.host == "127.0.0.1"
    status, kind, page = _get(f"{server.url}/?substation=primary")
    assert status == 200 and kind.startswith("text/html")
    html = page.decode()
    assert not URL.search(html), URL.findall(html)
    assert 'src="/vendor/model-viewer/model-viewer.min.js"' in html and 'ar-modes="webxr"' in html
    for local in re.findall(r'(?:src|href)="(/[^"]*)"', html):
        status, _kind, body = _get(f"{server.url}{local}")
        assert status == 200 and body, local
        if local.endswith((".js", ".css")) and "vendor" not in local:
            assert not URL.search(body.decode()), local
    status, kind, js = _get(f"{server.url}/vendor/model-viewer/model-viewer.min.js")
    assert status == 200 and kind.startswith("text/javascript") and b"ModelViewerElement" in js
    status, kind, wasm = _get(f"{server.url}/vendor/three/examples/jsm/libs/draco/draco_decoder.wasm")
    assert status == 200 and kind == "application/wasm" and wasm[:4] == b"\0asm"  # decoders local too


def test_each_substation_is_a_live_glb_and_a_json_description(server: ViewerServer) -> None:
    status, kind, glb = _get(f"{server.url}/glb/primary.glb")
    assert status == 200 and kind == "model/gltf-binary" and glb[:4] == b"glTF"
    status, _kind, body = _get(f"{server.url}/api/substation/ss20.json")
    document = json.loads(body)
    assert status == 200 and document["substation"] == "ss20"
    assert {a["kind"] for a in document["assets"]} >= {"rmu", "transformer", "pv_inverter", "battery"}
    assert all(a["state"] == "unknown" for a in document["assets"]), "an empty historian: unknown, not normal"
    status, _kind, body = _get(f"{server.url}/glb/nowhere.glb")
    assert status == 404 and b"no equipment for substation 'nowhere'" in body and b"primary" in body


@pytest.mark.parametrize(
    "path",
    [
        "/vendor/three/../../../../etc/passwd",
        "/vendor/three/examples/jsm/libs/draco/../../../../package.json",
        "/vendor/three/package.json",
        "/server.py",
        "/node_modules/gltf-validator/package.json",
    ],
)
def test_nothing_outside_the_viewer_files_is_served(server: ViewerServer, path: str) -> None:
    status, _kind, _body = _get(f"{server.url}{path}")
    assert status == 404


def test_viewer_url_names_the_substation_step_and_equipment(server: ViewerServer, tmp_path: Path) -> None:
    settings = load_settings(config_dir(tmp_path, lambda d: _port(d, server.port)))
    url = viewer_url("primary", 3, asset="PRIM/T2/YPTR1", settings=settings)
    assert url == f"{server.url}/?substation=primary&step=3&asset=PRIM%2FT2%2FYPTR1"  # the running one, reused
    assert _get(url)[0] == 200


def test_the_page_loads_the_model_in_chromium_with_every_request_on_loopback(server: ViewerServer) -> None:
    chromium = require_binary("chromium", "chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed: pip install -e '.[test]'")
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium, args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
        )
        try:
            page = browser.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.goto(
                viewer_url("ss20", 2, asset="SS20/T1/YPTR1", settings=None).replace("http://127.0.0.1:8765", server.url)
            )
            page.wait_for_selector("body[data-loaded='info']", timeout=60_000)
            page.wait_for_selector("body[data-model='loaded']", timeout=90_000)
            assert page.evaluate("customElements.get('model-viewer') !== undefined")
            assert page.locator("#step").inner_text() == "Step 2: SS20/T1/YPTR1"
            assert "SS20/T1/YPTR1 (transformer): unknown" in page.locator("#details").inner_text()
            assert page.locator("model-viewer").get_attribute("ar-modes") == "webxr"
        finally:
            browser.close()
    assert requests and all(r.startswith(f"{server.url}/") for r in requests), requests
