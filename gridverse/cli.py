"""The `gridverse` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from pathlib import Path

import yaml

from gridverse.config import SERVICE_PARTS
from gridverse.settings import ConfigError, load_settings, redacted


def _settings(args: argparse.Namespace):  # noqa: ANN202
    return load_settings(args.config)


def cmd_config_check(args: argparse.Namespace) -> int:
    settings = _settings(args)
    n_dev = sum(len(s.devices) for s in settings.site.substations)
    print(f"configuration OK: site {settings.site.name}, {len(settings.site.substations)} "
          f"substations, {n_dev} devices, {len(settings.site.sensors)} sensors, "
          f"{len(settings.profiles)} profiles")  # fmt: skip
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    print(yaml.safe_dump(redacted(_settings(args)), sort_keys=False))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from gridverse.logs import setup_logging
    from gridverse.stack import run_stack

    setup_logging(args.log_level)
    settings = _settings(args)
    headless = args.seconds is not None
    if not headless:
        print(f"gridverse demo: UI at http://127.0.0.1:{settings.ui.port}  "
              f"(MQTT on {settings.mqtt.host or '127.0.0.1'}:{settings.mqtt.port}, "
              f"Modbus RTUs on ports {[s.port for s in settings.site.substations]}, "
              f"historian {settings.historian.path}); Ctrl-C stops", flush=True)  # fmt: skip
    try:
        summary = asyncio.run(
            run_stack(settings, seconds=args.seconds, with_ui=not headless and not args.no_ui)
        )
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 0
    text = json.dumps(summary, indent=2, default=str)
    if args.summary:
        Path(args.summary).write_text(text + "\n")
        print(f"summary written to {args.summary}", file=sys.stderr)
    else:
        print(text)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """One or more parts as a long-running service (what each docker-compose service runs)."""
    from gridverse.logs import setup_logging
    from gridverse.stack import run_stack

    setup_logging(args.log_level)
    settings = _settings(args)
    parts = tuple(p for p in args.parts if p != "ui")
    try:
        asyncio.run(run_stack(settings, seconds=None, with_ui="ui" in args.parts,
                              progress=False, parts=parts))  # fmt: skip
    except KeyboardInterrupt:
        return 0
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gridverse", description=__doc__)
    parser.add_argument("--config", type=Path, default=None,
                        help="main YAML file (default: $GRIDVERSE_CONFIG or configs/gridverse.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)
    config = sub.add_parser("config", help="validate or show the configuration")
    config_sub = config.add_subparsers(dest="action", required=True)
    config_sub.add_parser("check", help="validate every file").set_defaults(func=cmd_config_check)
    config_sub.add_parser("show", help="print the effective configuration, secrets redacted"
                          ).set_defaults(func=cmd_config_show)  # fmt: skip
    demo = sub.add_parser("demo", help="run the whole system on this machine")
    demo.add_argument("--for", dest="seconds", type=float, default=None,
                      help="run headless for this many seconds, then stop")
    demo.add_argument("--summary", type=Path, default=None, help="write the JSON summary here")
    demo.add_argument("--no-ui", action="store_true", help="do not start the Streamlit UI")
    demo.add_argument("--log-level", default="WARNING")
    demo.set_defaults(func=cmd_demo)
    run = sub.add_parser("run", help="run some parts as a service (as docker-compose does)")
    run.add_argument("parts", nargs="+", choices=[*SERVICE_PARTS, "ui"])
    run.add_argument("--log-level", default="INFO")
    run.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - domain errors from any part, shown without traceback
        from gridmodel.network import NetworkLoadError

        if isinstance(exc, NetworkLoadError):
            print(f"network error: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
