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
        write_route_pack(route, args.pack, images=_step_images(args.substation, route), overview=overview)
        print(f"route pack written to {args.pack}", file=sys.stderr)
    if args.json:
        print(json.dumps(route.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(format_route(route))
    print(f"{len(route.steps)} steps in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


def _step_images(substation: str, route: object) -> dict[str, Path]:
    """Each step's own view when step views exist (`inspection.stepview.render_step`); none
    otherwise, and a step whose view fails is left without (the pack says so by its absence)."""
    import importlib

    try:
        stepview = importlib.import_module("inspection.stepview")
    except ModuleNotFoundError:
        return {}
    render_step = getattr(stepview, "render_step", None)
    if render_step is None:
        return {}
    images: dict[str, Path] = {}
    for step in getattr(route, "steps", ()):
        try:
            images[step.asset] = Path(render_step(substation, step))
        except Exception as exc:  # a renderer that cannot keep up: the pack goes out without the rest
            print(
                f"no step view for {step.asset} ({type(exc).__name__}: {exc}); the pack uses the substation's "
                "latest render for the remaining steps",
                file=sys.stderr,
            )
            break
    return images


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
