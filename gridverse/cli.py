"""The `gridverse` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import sys
from pathlib import Path

import yaml

from gridverse.config import SERVICE_PARTS
from gridverse.settings import ConfigError, load_settings, redacted


def _settings(args: argparse.Namespace):
    return load_settings(args.config)


def _emit_json(document: dict, path: Path | None, what: str) -> None:
    """Print a JSON document, or write it to `path` and say so on stderr."""
    text = json.dumps(document, indent=2, default=str)
    if path:
        Path(path).write_text(text + "\n")
        print(f"{what} written to {path}", file=sys.stderr)
    else:
        print(text)


def cmd_config_check(args: argparse.Namespace) -> int:
    """Validate every file; also open a network file, which is only read when the twin starts."""
    settings = _settings(args)
    network = settings.site.network
    if network.file is not None:
        from gridmodel.network import NetworkLoadError, load_grid
        from gridverse.settings import default_config_path

        try:
            load_grid(network)
        except NetworkLoadError as exc:
            raise ConfigError(f"{args.config or default_config_path()}: site.network.file: {exc}") from None
    n_dev = sum(len(s.devices) for s in settings.site.substations)
    inspected = settings.inspection.substation if settings.inspection else "nothing"
    print(
        f"configuration OK: site {settings.site.name}, {len(settings.site.substations)} "
        f"substations, {n_dev} devices, {len(settings.site.sensors)} sensors, "
        f"{len(settings.profiles)} profiles, inspection renders {inspected}"
    )
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    print(yaml.safe_dump(redacted(_settings(args)), sort_keys=False))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Everything on this machine; SIGTERM or Ctrl-C stops every part (the UI too) within seconds."""
    from gridverse.demo import DemoStack
    from gridverse.logs import setup_logging
    from gridverse.stack import run_stack

    setup_logging(args.log_level)
    settings = _settings(args)
    headless = args.seconds is not None
    with_ui = not headless and not args.no_ui
    if not headless:
        ui = f"UI at http://{settings.ui.address}:{settings.ui.port}  " if with_ui else ""
        print(
            f"gridverse demo: {ui}"
            f"(MQTT on {settings.mqtt.host or '127.0.0.1'}:{settings.mqtt.port}, "
            f"Modbus RTUs on ports {[s.port for s in settings.site.substations]}, "
            f"historian {settings.historian.path}); Ctrl-C stops",
            flush=True,
        )
    if with_ui:
        from gridverse.auth.demo_users import announce_demo_users

        announce_demo_users(settings)  # one user per role, passwords printed once
    make = lambda: DemoStack(settings, with_ui=with_ui, config_path=args.config)  # noqa: E731
    summary = asyncio.run(run_stack(make, seconds=args.seconds))
    gc.freeze()  # exit without a last full collection over the networks' object graphs (seconds)
    if summary.pop("stopped_by_signal", False):
        print("stopped", file=sys.stderr)
        if args.summary is None:
            return 0
    _emit_json(summary, args.summary, "summary")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """One or more parts as a long-running service (what each docker-compose service runs);
    SIGTERM or SIGINT stops them (and the UI child) within seconds, exit code 0."""
    from gridverse.logs import setup_logging
    from gridverse.stack import Stack, run_stack

    setup_logging(args.log_level)
    settings = _settings(args)
    parts = tuple(p for p in args.parts if p != "ui")
    make = lambda: Stack(settings, with_ui="ui" in args.parts, parts=parts, config_path=args.config)  # noqa: E731
    asyncio.run(run_stack(make, seconds=None, progress=False))
    gc.freeze()  # exit without a last full collection over the networks' object graphs (seconds)
    return 0


#: How far past this machine's clock `--at` may point (clock skew between machines); the
#: historian holds nothing later.
_FUTURE_SLACK_NS = 3600 * 10**9


def _parse_time(text: str) -> int:
    """ISO 8601 (UTC when no zone is given) or integer nanoseconds → UTC nanoseconds, between the
    epoch and now; anything else is refused with one line saying what to give."""
    import time

    import pandas as pd

    hint = "give an ISO time such as 2026-11-24T10:15:00Z (UTC when no zone is given) or nanoseconds since 1970"
    if text.strip().lstrip("-").isdigit():
        value = int(text)
    else:
        try:
            stamp = pd.Timestamp(text.strip())
            if pd.isna(stamp):
                raise ValueError("empty")
            stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
            value = int(stamp.as_unit("ns").value)
        except pd.errors.OutOfBoundsDatetime:
            raise argparse.ArgumentTypeError(f"{text!r} is outside the years 1970 to now; {hint}") from None
        except (ValueError, TypeError, OverflowError):
            raise argparse.ArgumentTypeError(f"{text!r} is not a time; {hint}") from None
    now = time.time_ns()
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is before 1970; {hint}")
    if value > now + _FUTURE_SLACK_NS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is in the future (this machine's clock says {pd.Timestamp(now, tz='UTC'):%Y-%m-%dT%H:%M:%SZ}); "
            "the historian holds nothing after now"
        )
    return value


def cmd_gateway_test(args: argparse.Namespace) -> int:
    """Poll every source once and print the points (like `telegraf --test`)."""
    from gateway.probe import run_probe

    dead = run_probe(_settings(args), args.listen)
    return 0 if dead == 0 else 4


def cmd_gateway_write(args: argparse.Namespace) -> int:
    """Write one value to a device point (refused unless profile and operator both allow it), and
    read it back. Exit codes: 5 not allowed, 6 value not representable, 7 device down or refusing,
    8 read-back differs."""
    import logging

    from gateway.writes import WriteError, WriteRefused, write_point
    from gridverse.audit.actions import audit_cli, point_value_now

    settings = _settings(args)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # our one-line error says it all
    target, before = f"{args.device}/{args.point}", {"value": point_value_now(settings, args.device, args.point)}

    def audit(outcome: str) -> None:
        after = {"value": args.value, "outcome": outcome}
        audit_cli(settings, "device.write", target, before=before, after=after, reason=args.reason)

    audit("requested")  # BEFORE acting: when the entry cannot be written this raises, and nothing is written
    try:
        written = asyncio.run(write_point(settings, args.device, args.point, args.value))
    except WriteError as exc:
        outcome = f"{'refused' if isinstance(exc, WriteRefused) else 'failed'}: {exc}"
        audit(outcome)
        print(f"write {outcome}", file=sys.stderr)
        return exc.exit_code
    audit("written, read back")
    print(f"wrote {args.device}/{args.point} = {args.value} ({written}), read back")
    return 0


def cmd_twin_replay(args: argparse.Namespace) -> int:
    """Re-run the estimate at a past moment from what the historian held then."""
    from gridmodel.replay import replay

    settings = _settings(args)
    report = replay(settings, args.at, store=args.store, estimator=args.estimator)
    _emit_json(report, args.output, "replay")
    return 0 if report["converged"] else 3


def cmd_twin_n1(args: argparse.Namespace) -> int:
    """N-1 over every line and transformer of the configured network, ranked."""
    import pandas as pd

    from gridmodel.contingency import n_minus_1
    from gridmodel.network import apply_profiles, load_grid, profile_values
    from gridverse.audit.actions import audit_cli

    settings = _settings(args)
    network = str(settings.site.network.file or settings.site.network.simbench_code)
    at = None if args.at is None else pd.Timestamp(args.at, tz="UTC")
    audit_cli(settings, "twin.n1", network, after={"at": None if at is None else at.isoformat(), "top": args.top})
    grid = load_grid(settings.site.network)
    if at is not None and not grid.profiles:
        print(
            f"twin n1: --at needs load profiles, and the network {network} has none; leave --at out (loads as "
            "the network holds them) or configure site.network as a SimBench code or a network with profiles",
            file=sys.stderr,
        )
        return 2
    if at is not None:
        apply_profiles(grid.net, profile_values(grid.profiles, at))

    def progress(done: int, total: int) -> None:
        if done % 10 == 0 or done == total:
            print(f"\rN-1: {done}/{total} outages", end="" if done < total else "\n", file=sys.stderr, flush=True)

    frame, _results, seconds = n_minus_1(
        grid.net,
        band=settings.anomaly.voltage_band_pu,
        limit=settings.anomaly.loading_limit_percent,
        progress=progress,
    )
    if args.output:
        frame.to_csv(args.output, index=False)
        print(f"{len(frame)} outages in {seconds:.1f} s, ranked table written to {args.output}", file=sys.stderr)
    else:
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(frame.head(args.top).drop(columns=["overloaded"]).to_string(index=False))
        print(f"{len(frame)} outages in {seconds:.1f} s", file=sys.stderr)
    return 0


def _add_part_runner(subparsers: argparse._SubParsersAction, part: str, help_text: str) -> None:
    """`gridverse <part> run`: the same as `gridverse run <part>`."""
    runner = subparsers.add_parser("run", help=help_text)
    runner.add_argument("--log-level", default="INFO")
    runner.set_defaults(func=cmd_run, parts=[part])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gridverse", description=__doc__)
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="main YAML file (default: $GRIDVERSE_CONFIG or configs/gridverse.yaml)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    config = sub.add_parser("config", help="validate or show the configuration")
    config_sub = config.add_subparsers(dest="action", required=True)
    config_sub.add_parser("check", help="validate every file").set_defaults(func=cmd_config_check)
    config_sub.add_parser("show", help="print the effective configuration, secrets redacted").set_defaults(
        func=cmd_config_show
    )
    demo = sub.add_parser("demo", help="run the whole system on this machine")
    demo.add_argument(
        "--for", dest="seconds", type=float, default=None, help="run headless for this many seconds, then stop"
    )
    demo.add_argument("--summary", type=Path, default=None, help="write the JSON summary here")
    demo.add_argument("--no-ui", action="store_true", help="do not start the Streamlit UI")
    demo.add_argument("--log-level", default="WARNING")
    demo.set_defaults(func=cmd_demo)
    run = sub.add_parser("run", help="run some parts as a service (as docker-compose does)")
    run.add_argument("parts", nargs="+", choices=[*SERVICE_PARTS, "ui"])
    run.add_argument("--log-level", default="INFO")
    run.set_defaults(func=cmd_run)
    gateway = sub.add_parser("gateway", help="the edge gateway: run it, or test every source once")
    gateway_sub = gateway.add_subparsers(dest="action", required=True)
    _add_part_runner(gateway_sub, "gateway", "poll devices, subscribe to sensors, spool, write")
    gateway_test = gateway_sub.add_parser("test", help="poll every device once, listen to the sensors, print points")
    gateway_test.add_argument("--listen", type=float, default=3.0, help="seconds to listen for MQTT sensors")
    gateway_test.set_defaults(func=cmd_gateway_test)
    gateway_write = gateway_sub.add_parser("write", help="write one SI value to a writable device point")
    gateway_write.add_argument("device")
    gateway_write.add_argument("point")
    gateway_write.add_argument("value", type=float)
    gateway_write.add_argument("--reason", default="", help="why (kept in the audit record)")
    gateway_write.set_defaults(func=cmd_gateway_write)
    twin = sub.add_parser("twin", help="the grid twin: live loop, replay of a past moment, N-1")
    twin_sub = twin.add_subparsers(dest="action", required=True)
    _add_part_runner(twin_sub, "twin", "the live estimation loop")
    replay = twin_sub.add_parser("replay", help="re-run the estimate at a past moment from the historian")
    replay.add_argument("--at", type=_parse_time, required=True, help="ISO time (UTC) or nanoseconds")
    replay.add_argument("--estimator", choices=["sparse", "pandapower"], default=None)
    replay.add_argument("--store", action="store_true", help="also write the replayed cycle to the historian")
    replay.add_argument("--output", type=Path, default=None, help="write the JSON report here")
    replay.set_defaults(func=cmd_twin_replay)
    n1 = twin_sub.add_parser("n1", help="rank every single line/transformer outage")
    n1.add_argument(
        "--at",
        type=_parse_time,
        default=None,
        help="ISO time (UTC): loads at this profile moment (default: as the network holds them)",
    )
    n1.add_argument("--top", type=int, default=15)
    n1.add_argument("--output", type=Path, default=None, help="write the whole ranked table as CSV")
    n1.set_defaults(func=cmd_twin_n1)
    from anomaly.cli import add_anomaly_commands  # the anomaly lab's commands live with their part
    from anomaly.scenarios.cli import add_scenarios_command

    add_scenarios_command(add_anomaly_commands(sub))
    from gridverse.audit.cli import add_audit_commands

    add_audit_commands(sub)
    from gridverse.auth.cli import add_users_commands

    add_users_commands(sub)
    from inspection.cli import add_inspect_commands

    add_inspect_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:  # Ctrl-C before the stack took over the signals (e.g. while loading)
        print("stopped", file=sys.stderr)
        return 130
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        from gridmodel.network import NetworkLoadError

        if isinstance(exc, NetworkLoadError):
            print(f"network error: {exc}", file=sys.stderr)
            return 1
        from gridmodel.replay import ReplayError

        if isinstance(exc, ReplayError):
            print(f"replay error: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
