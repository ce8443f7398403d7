"""`gridverse inspect register SCAN --substation S [--json]`: align a technician's point cloud to the
substation's model and report the transform, fit and per-equipment deviation (moved, leaning,
missing). Every registration is appended to the audit record (`inspect.register`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _os_user() -> str:
    """Who runs the command: the OS user (the CLI has no sign-in; the audit source says `cli`)."""
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


def cmd_inspect_register(args: argparse.Namespace) -> int:
    from gridverse.audit import open_audit
    from gridverse.settings import load_settings
    from inspection.registration import ScanError, load_scan, model_cloud, register_scan

    settings = load_settings(args.config)
    assets = settings.assets.get(args.substation)
    if not assets:
        known = ", ".join(sorted(settings.assets)) or "none"
        print(
            f"error: no equipment for substation {args.substation!r} in assets.yaml (substations with equipment: "
            f"{known}); add it there or import it with `gridverse inspect import-scl`",
            file=sys.stderr,
        )
        return 2
    try:
        scan = load_scan(args.scan)
        result = register_scan(scan, model_cloud(assets), max_deg=args.max_deg, max_m=args.max_m)
    except ScanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = result.to_dict()
    try:
        entry = open_audit(settings).append(
            _os_user(),
            "os-user",
            "inspect.register",
            args.substation,
            source="cli",
            after={
                "scan": str(Path(args.scan).resolve()),
                "transform": summary["transform"],
                "fitness": summary["fitness"],
                "inlier_rmse_m": summary["inlier_rmse_m"],
                "flagged": {e.asset: e.status for e in result.flagged},
            },
        )
    except Exception as exc:  # the registration is not reported when it cannot be recorded
        print(
            f"error: the registration could not be recorded in the audit record ({exc}); fix audit.path",
            file=sys.stderr,
        )
        return 2
    summary["audit_seq"] = entry.seq
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"scan {args.scan}: {result.scan_points} points registered to {args.substation} in {result.seconds:.2f} s")
    print(f"fitness {result.fitness:.3f}, inlier RMSE {1000 * result.inlier_rmse_m:.1f} mm")
    print("transform (scan → substation):")
    for row in result.transform:
        print("  " + "  ".join(f"{v:10.4f}" for v in row))
    seen = [e for e in result.equipment if e.status != "not_seen"]
    print(f"equipment seen: {len(seen)} of {len(result.equipment)}")
    for e in result.equipment:
        if e.status == "not_seen":
            continue
        detail = "" if e.offset_m is None else f" offset {100 * e.offset_m:.1f} cm, tilt {e.tilt_deg:.2f}°"
        print(f"  {e.status:8s} {e.asset} ({e.points} points){detail}")
    flagged = ", ".join(f"{e.asset} {e.status}" for e in result.flagged) or "none"
    print(f"flagged: {flagged}; audit entry {entry.seq}")
    return 0


def add_register_command(inspect_sub: argparse._SubParsersAction) -> None:
    """Add `register` to the `gridverse inspect` group."""
    p = inspect_sub.add_parser("register", help="align a point-cloud scan (PLY/PCD/XYZ) to a substation's model")
    p.add_argument("scan", type=Path, help="the scan: .ply, .pcd or .xyz")
    p.add_argument("--substation", required=True, help="a substation of assets.yaml")
    p.add_argument("--max-deg", type=float, default=30.0, help="the scan's rotation is within this of the model's")
    p.add_argument("--max-m", type=float, default=2.0, help="the scan's offset is within this of the model's (m)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_inspect_register)
