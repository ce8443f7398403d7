"""The browser/WebXR viewer, served from this machine (no CDN): the page, `@google/model-viewer`
from `inspection/viewer/node_modules` (installed by the bootstrap), and each substation as a GLB
exported on request with its live state.

A standard-library `ThreadingHTTPServer` on loopback: nothing to install, one thread per request,
and it can run inside any process (`ensure_viewer`) or alone (`gridverse inspect serve`).
Routes: `/` (the page; `?substation=S&step=N&asset=PATH`), `/viewer.js`, `/viewer.css`,
`/vendor/model-viewer/model-viewer.min.js`, `/vendor/three/…` (decoders model-viewer would
otherwise fetch from a CDN), `/glb/<substation>.glb`, `/api/substation/<substation>.json`,
`/healthz`."""

from __future__ import annotations

import json
import logging
import mimetypes
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from functools import partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

from gridverse.config import Settings
from gridverse.historian import Historian
from inspection.config import InspectionConfig

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
NODE_MODULES = HERE / "node_modules"
MODEL_VIEWER_JS = NODE_MODULES / "@google" / "model-viewer" / "dist" / "model-viewer.min.js"
STATIC = {"/": "index.html", "/index.html": "index.html", "/viewer.js": "viewer.js", "/viewer.css": "viewer.css"}
#: the only parts of three.js served: the decoders model-viewer loads for compressed models
THREE_SERVED = ("examples/jsm/libs/draco/", "examples/jsm/libs/basis/", "examples/jsm/loaders/")
SIGNATURE = "gridverse-viewer"
GLB_CACHE_S = 5.0  # a page load asks for the JSON, then the GLB: export once for both


class ViewerMissing(RuntimeError):
    """model-viewer is not installed; the message names the command that installs it."""


def _check_installed() -> None:
    if not MODEL_VIEWER_JS.is_file():
        raise ViewerMissing(
            f"{MODEL_VIEWER_JS} not found: install the viewer with `npm ci --prefix {HERE}` "
            "(scripts/bootstrap does it when npm is present)"
        )


class _Live:
    """Exports a substation with its live state, through one historian opened on first use."""

    def __init__(self, settings: Settings, historian: Historian | None) -> None:
        self.settings = settings
        self.historian = historian
        self._own = historian is None
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, bytes, dict[str, Any]]] = {}
        self._note = ""

    def _history(self) -> Historian | None:
        if self.historian is None:
            from gridverse.historian import open_historian

            try:
                self.historian = open_historian(self.settings.historian)
                self._note = ""
            except Exception as exc:  # no historian: the export says so, states stay unknown
                self._note = f"historian unreachable ({type(exc).__name__}: {exc}); states unknown"
        return self.historian

    def export(self, substation: str) -> tuple[bytes, dict[str, Any]]:
        """The GLB bytes and the page's JSON for `substation` (KeyError when it has no assets)."""
        from inspection.export import export_glb, gather_live, read_nodes

        assets = self.settings.assets.get(substation)
        if not assets:
            raise KeyError(substation)
        with self._lock:
            hit = self._cache.get(substation)
            if hit is not None and time.monotonic() - hit[0] < GLB_CACHE_S:
                return hit[1], hit[2]
            live, note = gather_live(self.settings, assets, substation, self._history())
            note = self._note or note
            import tempfile

            with tempfile.TemporaryDirectory(prefix="gridverse-glb-") as tmp:
                path = export_glb(assets, substation, Path(tmp) / "s.glb", live, note=note)
                data = path.read_bytes()
                nodes = read_nodes(path)
            document = {"substation": substation, "note": note, "assets": nodes, "time": time.time()}
            self._cache[substation] = (time.monotonic(), data, document)
            return data, document


class _Handler(BaseHTTPRequestHandler):
    server_version = SIGNATURE

    def __init__(self, *args: Any, live: _Live | None, **kwargs: Any) -> None:
        self.live = live
        super().__init__(*args, **kwargs)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("viewer %s " + format, self.address_string(), *args)

    def _send(self, status: int, body: bytes, content_type: str, cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        self._send(status, (message + "\n").encode(), "text/plain; charset=utf-8")

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path)
        if path in STATIC:
            file = HERE / STATIC[path]
            kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
            self._send(HTTPStatus.OK, file.read_bytes(), f"{kind}; charset=utf-8")
        elif path == "/healthz":
            self._send(HTTPStatus.OK, SIGNATURE.encode(), "text/plain; charset=utf-8")
        elif path == "/vendor/model-viewer/model-viewer.min.js":
            if not MODEL_VIEWER_JS.is_file():
                self._error(HTTPStatus.NOT_FOUND, f"model-viewer is not installed: run `npm ci --prefix {HERE}`")
                return
            self._send(HTTPStatus.OK, MODEL_VIEWER_JS.read_bytes(), "text/javascript; charset=utf-8", "max-age=3600")
        elif path.startswith("/vendor/three/"):
            self._three(path.removeprefix("/vendor/three/"))
        elif path.startswith("/glb/") and path.endswith(".glb"):
            self._substation(path[len("/glb/") : -len(".glb")], glb=True)
        elif path.startswith("/api/substation/") and path.endswith(".json"):
            self._substation(path[len("/api/substation/") : -len(".json")], glb=False)
        else:
            self._error(HTTPStatus.NOT_FOUND, f"{path}: not found (the viewer is at /?substation=NAME)")

    def _three(self, rest: str) -> None:
        root = (NODE_MODULES / "three").resolve()
        file = (root / rest).resolve()
        allowed = any(file.is_relative_to(root / served) for served in THREE_SERVED)  # after resolving ..
        if not allowed or not file.is_file():
            self._error(HTTPStatus.NOT_FOUND, f"/vendor/three/{rest}: not served")
            return
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if file.suffix == ".wasm":
            kind = "application/wasm"
        self._send(HTTPStatus.OK, file.read_bytes(), kind, "max-age=3600")

    def _substation(self, name: str, *, glb: bool) -> None:
        if self.live is None:
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, "this viewer was started without a configuration")
            return
        try:
            data, document = self.live.export(name)
        except KeyError:
            known = ", ".join(sorted(self.live.settings.assets)) or "none"
            self._error(HTTPStatus.NOT_FOUND, f"no equipment for substation {name!r} in assets.yaml (known: {known})")
            return
        except Exception as exc:
            log.warning("viewer: export of %s failed: %s: %s", name, type(exc).__name__, exc)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"export of {name!r} failed: {type(exc).__name__}: {exc}")
            return
        if glb:
            self._send(HTTPStatus.OK, data, "model/gltf-binary")
        else:
            self._send(HTTPStatus.OK, json.dumps(document).encode(), "application/json")


class ViewerServer:
    """The viewer's HTTP server in a daemon thread; `url` is its base address."""

    def __init__(self, settings: Settings | None, host: str, port: int, historian: Historian | None = None) -> None:
        live = _Live(settings, historian) if settings is not None else None
        self.httpd = ThreadingHTTPServer((host, port), partial(_Handler, live=live))
        self.httpd.daemon_threads = True
        self.host, self.port = str(self.httpd.server_address[0]), int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="inspect-viewer", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ViewerServer:
        self._thread.start()
        log.info("3D viewer on %s", self.url)
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(2.0)


def _answers(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=1.0) as response:
            return bool(response.read().decode() == SIGNATURE)
    except (OSError, urllib.error.URLError):
        return False


_running: dict[tuple[str, int], ViewerServer] = {}
_running_lock = threading.Lock()


def _cfg(settings: Settings | None) -> InspectionConfig:
    if settings is not None and settings.inspection is not None:
        return settings.inspection
    return InspectionConfig(substation="")


def ensure_viewer(settings: Settings, historian: Historian | None = None) -> str:
    """The viewer's base URL; starts it in this process unless one already answers on the port."""
    _check_installed()
    cfg = _cfg(settings)
    key = (cfg.viewer_host, cfg.viewer_port)
    base = f"http://{cfg.viewer_host}:{cfg.viewer_port}"
    with _running_lock:
        if key in _running:
            return _running[key].url
        if _answers(base):
            return base
        _running[key] = ViewerServer(settings, cfg.viewer_host, cfg.viewer_port, historian).start()
        return _running[key].url


def viewer_url(
    substation: str,
    step: int | None = None,
    *,
    asset: str | None = None,
    settings: Settings | None = None,
    start: bool = True,
) -> str:
    """The viewer page showing `substation`, and step `step` (highlighting SCL path `asset`).

    With `settings` (and `start`), the viewer is started in this process when none answers yet."""
    cfg = _cfg(settings)
    base = f"http://{cfg.viewer_host}:{cfg.viewer_port}"
    if settings is not None and start:
        base = ensure_viewer(settings)
    query: dict[str, str] = {"substation": substation}
    if step is not None:
        query["step"] = str(step)
    if asset:
        query["asset"] = asset
    return f"{base}/?{urlencode(query, quote_via=quote)}"


def serve_forever(settings: Settings, host: str, port: int, ready: Callable[[str], None] | None = None) -> None:
    """Run the viewer in the foreground until interrupted (`gridverse inspect serve`)."""
    _check_installed()
    server = ViewerServer(settings, host, port)
    if ready is not None:
        ready(server.url)
    try:
        server.httpd.serve_forever()
    finally:
        server.httpd.server_close()
