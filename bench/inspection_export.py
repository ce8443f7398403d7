"""GLB export time: each substation of configs/assets.yaml (and a large synthetic one) exported as a
GLB the way `gridverse inspect export` does, timed after one warm-up; then the Khronos
gltf-validator's time on the same files, measured separately (it is a check, not part of the
export).

    .venv/bin/python bench/inspection_export.py [--quick] [--repeat N]

Live state is given, not read from a historian, so the figure is the export alone. `--quick`
does fewer repeats and no large substation (well under a minute). Prints progress and one JSON
object on its last line: `glb_export_s` (median seconds for the inspected substation),
`glb_export_per_substation_s`, `glb_bytes`, `glb_validate_s` and `glb_validator_errors`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gridverse.settings import load_settings
from inspection.config import AssetConfig, AssetKind
from inspection.export import Live, export_glb
from inspection.state import AssetState
from inspection.viewer.validate import ValidatorMissing, validate_many


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def large_substation(bays: int = 40) -> list[AssetConfig]:
    """A big primary substation: per bay a breaker, two disconnectors, a CT and a cable termination."""
    assets = [AssetConfig(name="BIG/D1/BB1/L1", kind=AssetKind.BUSBAR, position=(0, 0), length=bays * 6.0)]
    for b in range(bays):
        x = (b - bays / 2) * 6.0
        for k, (kind, dy) in enumerate(
            [
                (AssetKind.DISCONNECTOR, -2),
                (AssetKind.BREAKER, -4),
                (AssetKind.CT, -6),
                (AssetKind.DISCONNECTOR, -8),
                (AssetKind.CABLE_TERMINATION, -10),
            ]
        ):
            assets.append(AssetConfig(name=f"BIG/D1/Q{b:02d}/E{k}", kind=kind, position=(x, dy)))
    for t in range(4):
        assets.append(AssetConfig(name=f"BIG/T{t}", kind=AssetKind.TRANSFORMER, position=(t * 10.0 - 15, 10)))
    return assets


def time_export(assets: list[AssetConfig], name: str, out: Path, repeat: int) -> tuple[float, int]:
    live = {a.name: Live(AssetState.NORMAL, {"MMXU1.TotW": 1.0e6}) for a in assets}
    export_glb(assets, name, out, live)  # warm-up: imports, first meshes
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        export_glb(assets, name, out, live)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out.stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no large synthetic substation")
    parser.add_argument("--repeat", type=int, default=None)
    args = parser.parse_args()
    repeat = args.repeat or (5 if args.quick else 20)
    settings = load_settings()
    inspected = settings.inspection.substation if settings.inspection else next(iter(settings.assets))
    subs: dict[str, list[AssetConfig]] = dict(settings.assets)
    if not args.quick:
        subs["BIG"] = large_substation()
    result: dict[str, object] = {"repeat": repeat, "quick": args.quick}
    per_sub: dict[str, float] = {}
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="bench-glb-") as tmp:
        files = []
        for name, assets in subs.items():
            path = Path(tmp) / f"{name}.glb"
            seconds, size = time_export(assets, name, path, repeat)
            per_sub[name], sizes[name] = round(seconds, 4), size
            files.append(path)
            say(f"{name}: {len(assets)} equipment, {size / 1024:.0f} kB, export {seconds * 1000:.0f} ms (median)")
        result["glb_export_s"] = per_sub[inspected]
        result["glb_export_substation"] = inspected
        result["glb_export_per_substation_s"] = per_sub
        result["glb_bytes"] = sizes
        result["equipment"] = {name: len(a) for name, a in subs.items()}
        try:
            start = time.perf_counter()
            reports = validate_many(files)
            result["glb_validate_s"] = round(time.perf_counter() - start, 3)
            result["glb_validator_errors"] = sum(r["issues"]["numErrors"] for r in reports)
            result["glb_validator_warnings"] = sum(r["issues"]["numWarnings"] for r in reports)
            result["glb_validator_version"] = reports[0].get("validatorVersion")
            say(
                f"gltf-validator: {len(files)} files in {result['glb_validate_s']} s (one node process), "
                f"{result['glb_validator_errors']} errors"
            )
        except ValidatorMissing as exc:
            say(f"validator not run: {exc}")
            result["glb_validate_s"] = None
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
