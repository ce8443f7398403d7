"""`gridverse inspect route SUBSTATION [--json] [--pack FILE.html]`: the inspection route of a
substation, generated from live risk (see `inspection/routes.py` for the rule)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def cmd_inspect_route(args: argparse.Namespace) -> int:
    from gridverse.historian import open_historian
    from gridverse.settings import load_settings
    from inspection.routepack import write_route_pack
    from inspection.routes import build_route, format_route

    settings = load_settings(args.config)
    if args.substation not in settings.assets:
        known = ", ".join(sorted(settings.assets)) or "none"
        print(
            f"error: no equipment for substation {args.substation!r} in assets.yaml (substations with equipment: "
            f"{known}); add it there or import it with `gridverse inspect import-scl`",
            file=sys.stderr,
        )
        return 2
    historian = open_historian(settings.historian)
    try:
        print(f"assessing {args.substation}: live state and N-1 of each equipment…", file=sys.stderr)
        t0 = time.perf_counter()
        route = build_route(settings, historian, args.substation, window_s=args.window)
    finally:
        historian.close()
    if args.pack is not None:
        overview = None
        if settings.inspection is not None:
            overview = Path(settings.inspection.output_dir) / f"{args.substation}.png"
        images = _step_images(args.substation, route, settings)
        print(f"{len(images)} of {len(route.steps)} step views rendered", file=sys.stderr)
        write_route_pack(route, args.pack, images=images, overview=overview)
        print(f"route pack written to {args.pack}", file=sys.stderr)
    if args.json:
        print(json.dumps(route.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(format_route(route))
    print(f"{len(route.steps)} steps in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


def _step_images(substation: str, route: object, settings: object = None) -> dict[str, Path]:
    """Every step's own view, rendered in the render worker (`inspection.stepview`), waiting for
    each (a command can wait; a page cannot). A step whose view fails is reported and left
    without one; after `MAX_FAILURES` failures in a row the renderer is taken as broken and the
    remaining steps go without (each says so in the pack)."""
    from inspection.stepview import render_step, stop_worker

    if settings is not None and getattr(settings, "inspection", None) is None:
        print("no step views: the configuration has no `inspection` section", file=sys.stderr)
        return {}
    images: dict[str, Path] = {}
    failures = 0
    try:
        for step in getattr(route, "steps", ()):
            if failures >= MAX_FAILURES:
                print(f"no step views for the remaining steps, from {step.asset} on", file=sys.stderr)
                break
            try:
                path = render_step(substation, step, settings=settings, timeout=STEP_TIMEOUT_S, wait_s=STEP_TIMEOUT_S)
            except Exception as exc:
                failures += 1
                print(f"no step view for {step.asset} ({type(exc).__name__}: {exc})", file=sys.stderr)
                continue
            images[step.asset] = Path(path)
            failures = 0
    finally:
        stop_worker()
    return images


MAX_FAILURES = 3
STEP_TIMEOUT_S = 120.0


def add_route_command(inspect_sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `route` to the `gridverse inspect` group."""
    route = inspect_sub.add_parser("route", help="the inspection route of a substation, riskiest equipment first")
    route.add_argument("substation", help="a substation with equipment in assets.yaml, e.g. primary")
    route.add_argument("--json", action="store_true", help="print the route as JSON")
    route.add_argument("--pack", type=Path, default=None, help="also write the offline route pack (HTML) here")
    route.add_argument(
        "--window", type=float, default=120.0, help="seconds of telemetry that count as live (default 120)"
    )
    route.set_defaults(func=cmd_inspect_route)
    return route
