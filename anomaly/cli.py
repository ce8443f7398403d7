"""`gridverse anomaly ...`: train, detect, evaluate, list and deploy models of the anomaly lab.

Every command prints what it does on stderr and its figures as one JSON object on the last line
of stdout. A bad input (a scenario file, a model name) is one line naming the file or model and
the remedy, with exit code 2; never a traceback (set GRIDVERSE_DEBUG=1 to see one).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from anomaly.dataset import DatasetError


class LabUnavailable(RuntimeError):
    """A part of the lab this command needs is not installed."""


class UsageError(ValueError):
    """A command-line value that cannot be used; the message says which and why."""


def _param(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` with VALUE read as JSON when it is JSON (numbers, true/false, lists), else as text."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: give KEY=VALUE, e.g. physics=false")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _last_line(document: dict[str, Any]) -> None:
    print(json.dumps(document, default=str, sort_keys=True), flush=True)


def _clear_errors(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """One line and exit code 2 for bad input; one line and exit code 1 for anything unexpected."""

    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        from anomaly.registry import RegistryError
        from gridverse.audit import AuditError

        try:
            return func(args)
        except (DatasetError, RegistryError, LabUnavailable, UsageError, AuditError) as exc:
            _say(f"error: {exc}")
            return 2
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            if os.environ.get("GRIDVERSE_DEBUG"):
                raise
            _say(f"error: {type(exc).__name__}: {exc} (set GRIDVERSE_DEBUG=1 for the traceback)")
            return 1

    return wrapper


def _settings(args: argparse.Namespace) -> Any:
    """The configuration of `--config` (or the default file when it exists), else None."""
    from gridverse.settings import default_config_path, load_settings

    path = args.config or default_config_path()
    if args.config or Path(path).exists():
        return load_settings(path)
    return None


def _registry(args: argparse.Namespace) -> Any:
    """The registry of `--registry`, else `anomaly.models_dir` of the configuration (if there is one)."""
    from anomaly.config import AnomalyConfig
    from anomaly.registry import ModelRegistry

    if getattr(args, "registry", None):
        return ModelRegistry(args.registry)
    settings = _settings(args)
    return ModelRegistry(settings.anomaly.models_dir if settings is not None else AnomalyConfig().models_dir)


def _audit(args: argparse.Namespace) -> Any:
    """The audit record of `--audit`, else the configuration's `audit.path` (else its default)."""
    from gridverse.audit import AuditConfig, AuditRecord, open_audit

    if getattr(args, "audit", None):
        return AuditRecord(args.audit)
    settings = _settings(args)
    if settings is not None:
        return open_audit(settings)
    cfg = AuditConfig()
    return AuditRecord(cfg.path, cfg.key_path, checkpoint_every=cfg.checkpoint_every)


def _os_user() -> str:
    """Who runs the command: the OS user (the CLI has no sign-in; the audit record says so by the source)."""
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no login name (a container without passwd entry): the uid
        return f"uid {os.getuid()}"


class Progress:
    """A progress bar on stderr that accepts what a fit reports: (done, total[, what]), a fraction, or a text."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.last = -1.0
        self.tty = sys.stderr.isatty()

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        numbers = [a for a in args if isinstance(a, int | float) and not isinstance(a, bool)]
        texts = [str(a) for a in args if isinstance(a, str)] + [str(v) for v in kwargs.values() if isinstance(v, str)]
        if len(numbers) >= 2 and numbers[1]:
            fraction = float(numbers[0]) / float(numbers[1])
        elif numbers:
            fraction = float(numbers[0])
        else:
            fraction = self.last
        fraction = min(max(fraction, 0.0), 1.0)
        if (fraction - self.last < 0.02 and fraction < 1.0 and not texts) or fraction == self.last:
            return
        self.last = fraction
        bar = "#" * int(fraction * 30)
        line = f"{self.what} [{bar:<30}] {fraction * 100:5.1f}% {' '.join(texts)}"
        print(("\r" if self.tty else "") + line, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.tty:
            print(file=sys.stderr)


def _pipeline_class() -> type:
    try:
        from anomaly.pipeline import LabPipeline
    except ImportError as exc:
        raise LabUnavailable(f"the lab pipeline (anomaly/pipeline.py, LabPipeline) cannot be imported: {exc}") from None
    return LabPipeline


def _read(directory: Path) -> Any:
    from anomaly.dataset import read_scenario

    scenario = read_scenario(directory)
    for note in scenario.notes:
        _say(f"{directory}: {note}")
    return scenario


def _validation_dirs(args: argparse.Namespace) -> list[Path]:
    if args.validation:
        return list(args.validation)
    out = []
    for d in args.data:
        sibling = Path(d).parent / "validation"
        if Path(d).name == "train" and (sibling / "labels.csv").exists():
            out.append(sibling)
    return out


def _report_of(model: Any, scenarios: list[Any]) -> dict[str, Any]:
    """The evaluation report of a model on labelled scenarios: pooled figures, and each directory's."""
    from anomaly.evaluate import evaluate_scenario, pool

    reports = [evaluate_scenario(s, model.detect(s)) for s in scenarios]
    return {**pool(reports), "scenarios": {str(s.path): r.to_dict() for s, r in zip(scenarios, reports, strict=True)}}


@_clear_errors
def cmd_train(args: argparse.Namespace) -> int:
    registry = _registry(args)
    from anomaly.registry import RegistryError

    if not args.model or "/" in args.model:
        raise RegistryError(f"--model {args.model!r}: give a plain name (the registry numbers the versions)")
    lab = _pipeline_class()
    scenarios = []
    for d in args.data:
        _say(f"reading {d}")
        scenarios.append(_read(Path(d)))
    progress = Progress(f"training {args.model}")
    started = time.perf_counter()
    pipeline = lab()
    if args.set:
        try:
            pipeline.set_params(**dict(args.set))
        except ValueError as exc:
            known = ", ".join(sorted(pipeline.get_params(deep=False)))
            raise UsageError(f"--set: {exc}; the pipeline's parameters are {known}") from None
    progress(0, len(scenarios) + 1, "(features and physics of each scenario)")
    model = pipeline.fit(scenarios, progress=progress)
    progress(1.0)
    progress.done()
    train_s = time.perf_counter() - started
    report = None
    validation = _validation_dirs(args)
    if validation:
        _say(f"evaluating on {', '.join(map(str, validation))}")
        report = _report_of(model, [_read(Path(d)) for d in validation])
    card = registry.save(args.model, model, data=args.data, report=report, train_s=train_s)
    _say(f"model {card.ref} stored in {card.path} ({train_s:.1f} s)")
    if report is not None:
        _say(f"validation: F1 {report['f1']}, precision {report['precision']}, recall {report['recall']}")
    if args.deploy:
        audit = _audit(args)
        registry.deploy(card.ref, audit=audit, actor=_os_user(), role="os-user", source="cli", reason="train --deploy")
        _say(f"deployed {card.ref} (recorded in {audit.path})")
    _last_line(
        {"model": card.ref, "path": card.path, "train_s": train_s, "data_hash": card.data_hash, "report": report}
    )
    return 0


@_clear_errors
def cmd_detect(args: argparse.Namespace) -> int:
    from anomaly.dataset import ALARMS_COLUMNS, write_alarms

    registry = _registry(args)
    model, card = registry.load(args.model)  # a wrong name fails before a large scenario is read
    scenario = _read(Path(args.data))
    _say(
        f"scoring {args.data} ({scenario.telemetry.shape[1]} points, {len(scenario.telemetry)} samples) with {card.ref}"
    )
    started = time.perf_counter()
    alarms = model.detect(scenario)
    seconds = time.perf_counter() - started
    missing = [c for c in ALARMS_COLUMNS if c not in alarms.columns]
    if missing:
        raise LabUnavailable(f"model {card.ref} returned alarms without column(s) {missing}; retrain it")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_alarms(args.out, alarms)
    samples = int(scenario.telemetry.size)
    _say(f"{len(alarms)} alarms written to {args.out} in {seconds:.1f} s")
    _last_line(
        {
            "alarms": len(alarms),
            "out": str(args.out),
            "model": card.ref,
            "seconds": seconds,
            "samples_per_s": samples / seconds if seconds > 0 else None,
        }
    )
    return 0


def _scenario_dir_for(args: argparse.Namespace) -> Path | None:
    if args.data:
        return Path(args.data)
    here = Path(args.labels).parent
    return here if (here / "points.csv").exists() and (here / "network.json").exists() else None


def _fmt(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


@_clear_errors
def cmd_evaluate(args: argparse.Namespace) -> int:
    from anomaly.dataset import read_alarms, read_labels
    from anomaly.evaluate import EvaluationConfig, evaluate, evaluate_scenario

    labels = read_labels(Path(args.labels))
    alarms = read_alarms(Path(args.alarms))
    directory = _scenario_dir_for(args)
    if directory is not None:
        scenario = _read(directory)
        report = evaluate_scenario(
            scenario, alarms, labels=labels, grace_samples=args.grace, labels_path=Path(args.labels)
        )
    else:
        _say(f"no scenario beside {args.labels} (give --data DIR): matching by exact names only")
        report = evaluate(labels, alarms, config=EvaluationConfig(grace_samples=args.grace, step_s=args.step))
    d = report.to_dict()
    _say(
        f"events: {report.labels} labelled, {report.found} found; alarm events: {report.alarm_events}, "
        f"{report.false_alarm_events} false"
    )
    _say(f"precision {_fmt(report.precision)}  recall {_fmt(report.recall)}  F1 {_fmt(report.f1)}")
    _say(
        f"delay: median {_fmt(report.median_delay_samples, 1)} samples, p90 {_fmt(report.p90_delay_samples, 1)}; "
        f"false alarm events per day {_fmt(report.false_alarms_per_day, 2)}; "
        f"clean time in alarm {_fmt(report.clean_time_in_alarm, 4)}; localisation {_fmt(report.localisation)}"
    )
    for kind, row in report.recall_by_type.items():
        _say(f"  {kind:<14} {row['found']}/{row['events']} found (recall {row['recall']:.2f})")
    load = report.alarm_load
    _say(
        f"alarm load: {load['per_10min_avg']:.2f} per 10 min on average, peak {load['per_10min_peak']}, "
        f"{load['flood_windows']} flood windows, {load['chattering_alarms']} chattering alarms"
    )
    for note in report.notes:
        _say(f"note: {note}")
    _last_line(d)
    return 0


@_clear_errors
def cmd_models(args: argparse.Namespace) -> int:
    from anomaly.registry import version_mismatch

    registry = _registry(args)
    deployed = registry.deployed_ref()
    cards = registry.cards()
    rows = []
    for card in cards:
        mismatch = version_mismatch(card)
        f1 = (card.report or {}).get("f1")
        live = card.ref == deployed or (deployed is None and card.path.endswith(os.path.join("models", "default")))
        rows.append(
            {
                "model": card.ref,
                "deployed": live,
                "created": card.created,
                "f1": f1,
                "train_s": card.train_s,
                "data_hash": card.data_hash,
                "path": card.path,
                "libraries": card.libraries,
                "version_warning": mismatch,
            }
        )
        _say(f"{'*' if live else ' '} {card.ref:<24} {card.created}  F1 {_fmt(f1)}  {card.data_hash[:19]}  {card.path}")
        if mismatch:
            _say(f"  warning: {mismatch}")
    if not cards:
        _say(f"no models in {registry.root}; train one with: gridverse anomaly train --data DIR --model NAME")
    _last_line({"registry": str(registry.root), "deployed": deployed, "models": rows})
    return 0


@_clear_errors
def cmd_deploy(args: argparse.Namespace) -> int:
    registry = _registry(args)
    audit = _audit(args)
    card = registry.deploy(args.model, audit=audit, actor=_os_user(), role="os-user", source="cli", reason=args.reason)
    _say(f"deployed {card.ref}: detect and the live detectors use it from now on (recorded in {audit.path})")
    _last_line({"deployed": card.ref, "path": card.path, "audit": str(audit.path)})
    return 0


def add_anomaly_commands(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add `gridverse anomaly ...` to the main parser; returns its subparsers so more commands can join."""
    anomaly = sub.add_parser("anomaly", help="the anomaly lab: train, detect, evaluate, list and deploy models")
    asub = anomaly.add_subparsers(dest="action", required=True)

    def registry_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--registry", type=Path, default=None, help="model registry folder (default: anomaly.models_dir)"
        )

    def audit_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--audit", type=Path, default=None, help="audit record a deployment goes to (default: audit.path)"
        )

    train = asub.add_parser("train", help="train the lab pipeline on scenario directories and store it")
    train.add_argument("--data", type=Path, nargs="+", required=True, metavar="DIR", help="training scenario dirs")
    train.add_argument("--model", required=True, metavar="NAME", help="model name (versions are numbered)")
    train.add_argument(
        "--validation",
        type=Path,
        nargs="+",
        default=None,
        metavar="DIR",
        help="labelled scenarios for the model's report (default: a 'validation' dir beside a 'train' dir)",
    )
    train.add_argument(
        "--set",
        type=_param,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a pipeline parameter, e.g. --set physics=false (repeatable)",
    )
    train.add_argument("--deploy", action="store_true", help="deploy the new model")
    registry_option(train)
    audit_option(train)
    train.set_defaults(func=cmd_train)

    detect = asub.add_parser("detect", help="score a scenario directory and write alarms.csv")
    detect.add_argument("--data", type=Path, required=True, metavar="DIR")
    detect.add_argument("--model", default=None, metavar="NAME", help="NAME or NAME/vN (default: the deployed model)")
    detect.add_argument("--out", type=Path, required=True, metavar="alarms.csv")
    registry_option(detect)
    detect.set_defaults(func=cmd_detect)

    evaluate = asub.add_parser("evaluate", help="event-level figures of alarms against labels")
    evaluate.add_argument("--labels", type=Path, required=True, metavar="labels.csv")
    evaluate.add_argument("--alarms", type=Path, required=True, metavar="alarms.csv")
    evaluate.add_argument(
        "--data", type=Path, default=None, metavar="DIR", help="the scenario (topology, span); default: beside labels"
    )
    evaluate.add_argument("--grace", type=int, default=2, help="samples after an event an alarm still finds it")
    evaluate.add_argument("--step", type=float, default=900.0, help="sampling step in s when no scenario is given")
    evaluate.set_defaults(func=cmd_evaluate)

    models = asub.add_parser("models", help="list the registry (* = deployed)")
    registry_option(models)
    models.set_defaults(func=cmd_models)

    deploy = asub.add_parser("deploy", help="deploy a model for detect and the live detectors")
    deploy.add_argument("model", metavar="NAME", help="NAME (newest version) or NAME/vN")
    deploy.add_argument("--reason", default="", help="why (kept in the audit record)")
    registry_option(deploy)
    audit_option(deploy)
    deploy.set_defaults(func=cmd_deploy)
    return asub
