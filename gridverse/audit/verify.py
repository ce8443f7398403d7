"""Checking an audit record: every entry's hash, the chain from each entry to the next, the
sequence numbers, and every signed checkpoint against the public key beside the record. Says
which entry (line and seq) is wrong and how: modified, deleted, inserted, reordered, truncated."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gridverse.audit.record import (
    ENTRY_FIELDS,
    GENESIS,
    checkpoint_message,
    checkpoints_path,
    entry_hash,
    key_id,
    public_key_path,
)

_KEYS = {*ENTRY_FIELDS, "hash"}
_CP_KEYS = {"seq", "head", "time", "key_id", "signature"}


@dataclass(frozen=True)
class Problem:
    """One piece of evidence of tampering: where (file, line, seq) and what."""

    what: str
    line: int | None = None
    seq: int | None = None
    file: str = "record"

    def __str__(self) -> str:
        where = []
        if self.file != "record":
            where.append(self.file)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.seq is not None:
            where.append(f"seq {self.seq}")
        return f"{', '.join(where)}: {self.what}" if where else self.what


@dataclass
class VerifyReport:
    """The outcome of `verify_record`; `ok` when no problem was found."""

    path: Path
    entries: int = 0
    last_seq: int = 0
    checkpoints: int = 0
    last_checkpoint_seq: int = 0
    key_id: str = ""
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def unsigned_tail(self) -> int:
        """Entries after the last signed checkpoint (appended since; signed at the next one)."""
        return max(0, self.last_seq - self.last_checkpoint_seq)

    def summary(self) -> str:
        state = "INTACT" if self.ok else f"BROKEN ({len(self.problems)} problem{'s' * (len(self.problems) != 1)})"
        cps = f"{self.checkpoints} signed checkpoint{'s' * (self.checkpoints != 1)}"
        if self.checkpoints:
            cps += f" (last at seq {self.last_checkpoint_seq}, key {self.key_id})"
        return f"{state}: {self.entries} entries, {cps}"


def _load_lines(path: Path) -> tuple[list[str], bool]:
    """The file's lines and whether its last line was cut off (no final newline)."""
    data = path.read_bytes()
    if not data:
        return [], False
    complete = data.endswith(b"\n")
    return data.decode("utf-8", errors="replace").split("\n")[: None if not complete else -1], not complete


def verify_record(
    path: Path, *, trusted_key_id: str | None = None, checkpoint_every: int | None = None
) -> VerifyReport:
    """Check the record at `path` (and `path.checkpoints`, `path.pub`). `trusted_key_id` pins the
    signing key (as printed by earlier runs): a record re-signed with another key is refused.
    `checkpoint_every` (the writer's `audit.checkpoint_every`, when known): that many entries or
    more after the last signed checkpoint means checkpoints were deleted."""
    path = Path(path)
    report = VerifyReport(path=path.resolve())
    if not path.exists():
        if public_key_path(path).exists() or checkpoints_path(path).exists():
            report.problems.append(Problem(f"no audit record at {path}, but its checkpoints or key remain: deleted"))
        else:
            report.problems.append(
                Problem(f"no audit record at {path} (nothing recorded yet, or audit.path / --path points elsewhere)")
            )
        return report
    lines, cut = _load_lines(path)
    hash_at: dict[int, str] = {}
    line_at: dict[int, int] = {}
    prev_seq, prev_hash, prev_line = 0, GENESIS, 0
    for i, text in enumerate(lines, start=1):
        if cut and i == len(lines):
            report.problems.append(Problem("the last line is cut off (truncated in the middle of an entry)", line=i))
            break
        try:
            doc: Any = json.loads(text)
        except ValueError:
            report.problems.append(Problem("not an audit entry (not JSON): damaged or inserted", line=i))
            continue
        if not isinstance(doc, dict) or set(doc) != _KEYS or not isinstance(doc.get("seq"), int):
            got = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
            report.problems.append(Problem(f"not an audit entry (fields {got}): damaged or inserted", line=i))
            continue
        seq, stored = doc["seq"], doc["hash"]
        report.entries += 1
        try:
            recomputed = entry_hash(doc)
        except (TypeError, ValueError):
            recomputed = ""
        if recomputed != stored:
            report.problems.append(
                Problem(f"modified: its hash does not match its fields ({doc['action']} by {doc['actor']})", i, seq)
            )
        if seq == prev_seq + 1:
            if doc["prev_hash"] != prev_hash:
                report.problems.append(
                    Problem(
                        f"does not chain to the entry before it (line {prev_line}): an entry was inserted, replaced "
                        "or reordered here",
                        i,
                        seq,
                    )
                )
        elif seq > prev_seq + 1:
            missing = f"seq {prev_seq + 1}" if seq == prev_seq + 2 else f"seq {prev_seq + 1}..{seq - 1}"
            report.problems.append(
                Problem(f"follows seq {prev_seq} (line {prev_line}): {missing} deleted or moved", i, seq)
            )
        else:
            report.problems.append(
                Problem(
                    f"comes after seq {prev_seq} (line {prev_line}): entries reordered, or one inserted here", i, seq
                )
            )
        if seq not in hash_at:
            hash_at[seq], line_at[seq] = stored, i
        prev_seq, prev_hash, prev_line = seq, stored, i
        report.last_seq = max(report.last_seq, seq)
    _verify_checkpoints(path, report, hash_at, line_at, trusted_key_id)
    if checkpoint_every and report.unsigned_tail >= checkpoint_every:
        first = report.last_checkpoint_seq + 1
        report.problems.append(
            Problem(
                f"seq {first}..{report.last_seq}: {report.unsigned_tail} entries without a signed checkpoint, though "
                f"the writer signs one every {checkpoint_every} (audit.checkpoint_every): checkpoints were deleted",
                line_at.get(first),
                first,
            )
        )
    if report.ok and report.unsigned_tail:
        first = report.last_checkpoint_seq + 1
        span = f"seq {first}" if first == report.last_seq else f"seq {first}..{report.last_seq}"
        report.notes.append(
            f"{span} ({report.unsigned_tail} entries) not yet covered by a signed checkpoint (appended since the "
            "last one; signed every audit.checkpoint_every entries and when the writing process exits)"
        )
    return report


def _verify_checkpoints(
    path: Path, report: VerifyReport, hash_at: dict[int, str], line_at: dict[int, int], trusted: str | None
) -> None:
    cp_path, pub_path = checkpoints_path(path), public_key_path(path)
    cp_name = cp_path.name
    if not cp_path.exists():
        if trusted:
            report.problems.append(Problem(f"no signed checkpoint ({cp_name} missing), but key {trusted} is trusted"))
        elif pub_path.exists():
            report.problems.append(
                Problem(f"missing, but {pub_path.name} shows checkpoints were signed: deleted", file=cp_name)
            )
        elif report.last_seq:
            report.notes.append(f"no signed checkpoint yet ({cp_name} does not exist)")
        return
    if not pub_path.exists():
        report.problems.append(Problem(f"public key {pub_path.name} is missing: checkpoints cannot be checked"))
        return
    try:
        public = serialization.load_pem_public_key(pub_path.read_bytes())
        if not isinstance(public, Ed25519PublicKey):
            raise ValueError("not an Ed25519 key")
    except ValueError as exc:
        report.problems.append(Problem(f"public key {pub_path.name} cannot be read ({exc}): replaced or damaged"))
        return
    kid = key_id(public)
    report.key_id = kid
    if trusted and kid != trusted:
        report.problems.append(
            Problem(f"public key {pub_path.name} has id {kid}, not the trusted {trusted}: the key was replaced")
        )
    lines, cut = _load_lines(cp_path)
    last = 0
    for i, text in enumerate(lines, start=1):
        if cut and i == len(lines):
            report.problems.append(Problem("the last checkpoint is cut off", line=i, file=cp_name))
            break
        try:
            cp: Any = json.loads(text)
            if not isinstance(cp, dict) or set(cp) != _CP_KEYS or not isinstance(cp["seq"], int):
                raise ValueError
            signature = base64.b64decode(cp["signature"], validate=True)
        except (ValueError, binascii.Error):
            report.problems.append(Problem("not a checkpoint: damaged or inserted", line=i, file=cp_name))
            continue
        seq = cp["seq"]
        if cp["key_id"] != kid:
            report.problems.append(
                Problem(
                    f"signed by key {cp['key_id']}, but {pub_path.name} is key {kid}: the public key was replaced",
                    i,
                    seq,
                    cp_name,
                )
            )
            continue
        try:
            public.verify(signature, checkpoint_message(cp))
        except InvalidSignature:
            report.problems.append(Problem("bad signature: the checkpoint was forged or altered", i, seq, cp_name))
            continue
        report.checkpoints += 1
        if seq < last:
            report.problems.append(Problem(f"checkpoint for seq {seq} after one for seq {last}", i, seq, cp_name))
        last = max(last, seq)
        report.last_checkpoint_seq = max(report.last_checkpoint_seq, seq)
        if seq not in hash_at:
            ends = f"ends at seq {report.last_seq}" if report.last_seq else "holds no entry"
            report.problems.append(
                Problem(
                    f"a signed checkpoint covers seq {seq}, but the record {ends}: entries were deleted (tail "
                    "truncated)",
                    seq=seq,
                )
            )
        elif hash_at[seq] != cp["head"]:
            report.problems.append(
                Problem(
                    f"differs from what checkpoint {i} signed: the chain up to here was rewritten",
                    line_at[seq],
                    seq,
                )
            )
