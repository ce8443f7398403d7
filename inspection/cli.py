"""`gridverse inspect ...`: import an SCL file as assets, export a substation as GLB, serve the
3D viewer. Other inspection commands join the same group through `register_inspect_command`,
or as a module found here (`inspection/route_cli.py` with `add_route_command(inspect_sub)`,
`inspection/register_cli.py` with `add_register_command(inspect_sub)`).

A bad input (a file, a substation) is one line naming it and the remedy, exit code 2; never a
traceback."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gridverse.config import Settings

#: modules whose function adds its own subcommand: fn(inspect_subparsers)
_PLUGGED = (("inspection.route_cli", "add_route_command"), ("inspection.register_cli", "add_register_command"))
#: functions that add a subcommand to the `inspect` group: fn(inspect_subparsers)
_EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction], object]] = []


def register_inspect_command(fn: Callable[[argparse._SubParsersAction], object]) -> None:
    """Add a subcommand to `gridverse inspect` (call before the parser is built)."""
    if fn not in _EXTRA_COMMANDS:
        _EXTRA_COMMANDS.append(fn)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _settings(args: argparse.Namespace) -> Settings:
    from gridverse.settings import load_settings

    return load_settings(args.config)


def _rename(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        scl, sep, site = pair.partition("=")
        if not sep or not scl or not site:
            raise argparse.ArgumentTypeError(f"--substation {pair!r}: write SCL_NAME=SITE_NAME, e.g. RVS=primary")
        out[scl] = site
    return out


def cmd_import_scl(args: argparse.Namespace) -> int:
    from inspection.scl import SclError, import_scl, summary, to_assets_yaml

    try:
        rename = _rename(args.substation or [])
    except argparse.ArgumentTypeError as exc:
        _say(f"error: {exc}")
        return 2
    if args.scale <= 0:
        _say(f"error: --scale {args.scale}: metres per diagram unit must be positive")
        return 2
    devices: set[str] = set()
    try:  # the site's devices, to link equipment whose LNode names one; the import works without
        settings = _settings(args)
        devices = {d.name for sub in settings.site.substations for d in sub.devices}
        devices |= {s.name for s in settings.site.sensors}
    except Exception as exc:
        _say(f"note: the configuration did not load ({type(exc).__name__}); equipment is not linked to devices")
    try:
        result = import_scl(args.file, scale=args.scale, devices=devices)
    except SclError as exc:
        _say(f"error: {exc}")
        return 2
    print(summary(result))
    text = to_assets_yaml(result, rename)
    if args.out is None:
        print(text, end="")
    else:
        if args.out.exists() and not args.force:
            _say(f"error: {args.out} exists; give --force to overwrite it, or another --out")
            return 2
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        n = sum(len(s.assets) for s in result.substations)
        _say(f"wrote {n} assets of {len(result.substations)} substation(s) to {args.out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from inspection.export import ExportError, export_glb, gather_live

    settings = _settings(args)
    assets = settings.assets.get(args.substation)
    if not assets:
        known = ", ".join(sorted(settings.assets)) or "none"
        _say(f"error: no equipment for substation {args.substation!r} in assets.yaml (known: {known})")
        return 2
    historian = None
    note = ""
    if not args.no_live:
        from gridverse.historian import open_historian

        try:
            historian = open_historian(settings.historian)
        except Exception as exc:
            note = f"historian unreachable ({type(exc).__name__}: {exc}); states unknown"
    else:
        note = "exported without live state (--no-live)"
    start = time.perf_counter()
    try:
        live, live_note = gather_live(settings, assets, args.substation, historian)
        path = export_glb(assets, args.substation, args.out, live, note=note or live_note)
    except ExportError as exc:
        _say(f"error: {exc}")
        return 2
    finally:
        if historian is not None:
            historian.close()
    seconds = time.perf_counter() - start
    states: dict[str, int] = {}
    for asset in assets:
        state = live.get(asset.name)
        key = state.state.value if state is not None else "unknown"
        states[key] = states.get(key, 0) + 1
    listing = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
    _say(f"wrote {path} ({path.stat().st_size} bytes, {len(assets)} equipment: {listing}) in {seconds:.2f} s")
    if note or live_note:
        _say(f"note: {note or live_note}")
    if args.validate:
        from inspection.viewer.validate import ValidatorMissing, validate_glb

        try:
            report = validate_glb(path)
        except ValidatorMissing as exc:
            _say(f"error: {exc}")
            return 1
        issues = report["issues"]
        _say(
            f"gltf-validator {report.get('validatorVersion', '')}: {issues['numErrors']} errors, "
            f"{issues['numWarnings']} warnings"
        )
        return 1 if issues["numErrors"] else 0
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from inspection.viewer.server import ViewerMissing, serve_forever

    settings = _settings(args)
    cfg = settings.inspection
    host = args.host or (cfg.viewer_host if cfg else "127.0.0.1")
    port = args.port or (cfg.viewer_port if cfg else 8765)
    first = cfg.substation if cfg else next(iter(settings.assets), "")
    try:
        serve_forever(settings, host, port, ready=lambda url: _say(f"3D viewer on {url}/?substation={first}"))
    except ViewerMissing as exc:
        _say(f"error: {exc}")
        return 2
    except OSError as exc:
        _say(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port")
        return 2
    except KeyboardInterrupt:
        _say("stopped")
    return 0


def add_inspect_commands(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The `inspect` group and its commands; returns its subparsers for more commands."""
    inspect = sub.add_parser("inspect", help="field inspection: SCL import, GLB export, 3D viewer, routes")
    inspect_sub = inspect.add_subparsers(dest="action", required=True)

    scl = inspect_sub.add_parser(
        "import-scl", help="read the Substation section of an IEC 61850 .ssd/.scd file as assets.yaml"
    )
    scl.add_argument("file", type=Path, help="the SCL file (.ssd, .scd)")
    scl.add_argument("--out", type=Path, default=None, help="write assets.yaml here (default: print it)")
    scl.add_argument("--force", action="store_true", help="overwrite --out when it exists")
    scl.add_argument("--scale", type=float, default=1.0, help="metres per sxy diagram unit (default 1)")
    scl.add_argument(
        "--substation", action="append", metavar="SCL=SITE", help="key SCL substation SCL as site substation SITE"
    )
    scl.set_defaults(func=cmd_import_scl)

    export = inspect_sub.add_parser("export", help="write a substation as GLB (glTF 2.0) for headsets and browsers")
    export.add_argument("substation", help="a substation of assets.yaml")
    export.add_argument("--out", type=Path, required=True, help="the .glb file to write")
    export.add_argument("--no-live", action="store_true", help="do not read the historian (states unknown)")
    export.add_argument("--validate", action="store_true", help="check it with the Khronos glTF validator (node)")
    export.set_defaults(func=cmd_export)

    serve = inspect_sub.add_parser("serve", help="serve the browser/WebXR 3D viewer on this machine")
    serve.add_argument("--host", default=None, help="address (default inspection.viewer_host, loopback)")
    serve.add_argument("--port", type=int, default=None, help="port (default inspection.viewer_port)")
    serve.set_defaults(func=cmd_serve)

    for module, function in _PLUGGED:  # commands living in their own modules, when they are there
        try:
            found = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
        else:
            register_inspect_command(getattr(found, function))
    for fn in _EXTRA_COMMANDS:
        fn(inspect_sub)
    return inspect_sub
