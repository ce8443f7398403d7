"""`gridverse audit verify|show`: check the record's chain and signatures, or print its entries."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gridverse.audit.record import AuditRecord
from gridverse.audit.verify import verify_record

#: Exit code of `gridverse audit verify` when the record shows tampering.
EXIT_BROKEN = 3


def _record_path(args: argparse.Namespace) -> Path:
    if args.path is not None:
        return Path(args.path)
    from gridverse.settings import load_settings

    return Path(load_settings(args.config).audit.path)


def _checkpoint_every(args: argparse.Namespace, path: Path) -> int | None:
    """The writer's audit.checkpoint_every for this record: from --checkpoint-every, or from the
    configuration when its audit.path is this record (None when unknown)."""
    if args.checkpoint_every is not None:
        return int(args.checkpoint_every)
    from gridverse.settings import ConfigError, load_settings

    try:
        audit = load_settings(args.config).audit
    except (ConfigError, OSError):
        if args.path is None:
            raise
        return None
    return audit.checkpoint_every if Path(audit.path).resolve() == path.resolve() else None


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Exit 0 when the record is intact, 3 when any entry was modified, deleted, inserted,
    reordered or the tail truncated (each problem printed with its line and seq)."""
    path = _record_path(args)
    report = verify_record(path, trusted_key_id=args.key_id, checkpoint_every=_checkpoint_every(args, path))
    print(f"audit record {report.path}")
    print(report.summary())
    for problem in report.problems[: args.max_problems]:
        print(f"  {problem}")
    if len(report.problems) > args.max_problems:
        print(f"  … and {len(report.problems) - args.max_problems} more")
    for note in report.notes:
        print(f"  note: {note}")
    if not report.ok:
        return EXIT_BROKEN
    if args.strict and report.unsigned_tail:
        print("  --strict: entries after the last signed checkpoint are not accepted", file=sys.stderr)
        return EXIT_BROKEN
    return 0


def cmd_audit_show(args: argparse.Namespace) -> int:
    """Print the last entries, one line each (or JSON lines with --json)."""
    path = _record_path(args)
    entries = AuditRecord(path).entries()
    shown = entries[-args.last :] if args.last else entries
    print(f"audit record {path.resolve()}: {len(entries)} entries, showing {len(shown)}", file=sys.stderr)
    for e in shown:
        if args.json:
            print(json.dumps(e.to_dict(), ensure_ascii=False))
            continue
        change = ""
        if e.before is not None or e.after is not None:
            change = f" {json.dumps(e.before, ensure_ascii=False)} -> {json.dumps(e.after, ensure_ascii=False)}"
        why = f" reason: {e.reason}" if e.reason else ""
        src = f" from {e.source}" if e.source else ""
        print(f"{e.seq:>6} {e.time} {e.actor} ({e.role}){src} {e.action} {e.target}{change}{why}")
    return 0


def add_audit_commands(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add `gridverse audit …` to the command line; returns the audit subparsers."""
    audit = sub.add_parser("audit", help="the tamper-evident audit record: verify it, show entries")
    audit_sub = audit.add_subparsers(dest="action", required=True)
    verify = audit_sub.add_parser("verify", help="check every entry's hash, the chain and the signed checkpoints")
    verify.add_argument("--path", type=Path, default=None, help="the record (default: audit.path of the config)")
    verify.add_argument("--key-id", default=None, help="refuse checkpoints not signed by this key id (pinned)")
    verify.add_argument(
        "--strict", action="store_true", help="also fail when entries follow the last signed checkpoint"
    )
    verify.add_argument(
        "--checkpoint-every", type=int, default=None, help="the writer's audit.checkpoint_every (default: the config's)"
    )
    verify.add_argument("--max-problems", type=int, default=20, help=argparse.SUPPRESS)
    verify.set_defaults(func=cmd_audit_verify)
    show = audit_sub.add_parser("show", help="print the record's entries")
    show.add_argument("--path", type=Path, default=None, help="the record (default: audit.path of the config)")
    show.add_argument("--last", type=int, default=20, help="how many of the latest entries (0: all)")
    show.add_argument("--json", action="store_true", help="one JSON object per line")
    show.set_defaults(func=cmd_audit_show)
    return audit_sub
