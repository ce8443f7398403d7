"""The append-only, tamper-evident audit record: one JSON line per entry, each hash-chained to
the one before it, with Ed25519-signed checkpoints of the chain head kept beside it.

Callers append BEFORE they act: `append` either returns the written entry or raises
`AuditError` (naming the file and the remedy), and an action whose entry could not be written
must not be performed. Entries never hold secrets: `before`/`after` keys named like passwords,
tokens or hashes are refused.

Files, for a record at `P`: `P` (entries), `P.checkpoints` (signed checkpoints), `P.pub` (the
public key, so that a verifier needs no private key), `P.lock` (the cross-process lock), and
the private key at `key_path` (mode 0600)."""

from __future__ import annotations

import atexit
import base64
import contextlib
import fcntl
import hashlib
import json
import math
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

if TYPE_CHECKING:
    from gridverse.config import Settings

__all__ = [
    "ACTIONS",
    "ENTRY_FIELDS",
    "GENESIS",
    "AuditEntry",
    "AuditError",
    "AuditRecord",
    "checkpoint_message",
    "checkpoints_path",
    "entry_hash",
    "key_id",
    "open_audit",
    "public_key_path",
]

#: The actions the product records (dotted: part.verb). Others may be added; the format is checked.
ACTIONS = frozenset(
    {
        "auth.signin",
        "auth.signin_failed",
        "auth.signout",
        "auth.lockout",
        "users.add",
        "users.passwd",
        "users.disable",
        "alarm.ack",
        "alarm.shelve",
        "alarm.unshelve",
        "alarm.remove",
        "alarm.return",
        "twin.whatif",
        "twin.n1",
        "device.write",
        "device.writes_enabled",
        "model.train",
        "model.deploy",
        "config.change",
        "inspect.step",
        "inspect.finding",
        "inspect.register",
    }
)

#: The fields of an entry, in the order they are written; `hash` follows them.
ENTRY_FIELDS = ("seq", "time", "actor", "role", "source", "action", "target", "before", "after", "reason", "prev_hash")

#: prev_hash of the first entry.
GENESIS = "0" * 64

_ACTION_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
#: Keys that name a secret: passwords and their hashes, tokens, keys, salts, cookies. (A content
#: digest such as a model's `data_hash` is not a secret; a bare `hash` or `password_hash` is.)
_SECRET_KEY_RE = re.compile(
    r"passw|passphrase|pwd|pw_?hash|^hash(ed)?$|secret|token|credential|private.?key|api.?key|^salt$|cookie",
    re.IGNORECASE,
)
_SECRET_VALUE_RE = re.compile(r"^\$(argon2(id|i|d)|2[aby]|scrypt|pbkdf2)[$-]")
_CHECKPOINT_CONTEXT = b"gridverse-audit-checkpoint/v1\n"


class AuditError(OSError):
    """The audit record cannot be written or read as it must be; the message names the file and
    the remedy. The action that wanted the entry must not go ahead."""


@dataclass(frozen=True)
class AuditEntry:
    """One entry of the record: who (actor, role), when (UTC ISO), from where (source), what
    (action, target, before, after), why (reason), and its place in the chain."""

    seq: int
    time: str
    actor: str
    role: str
    source: str
    action: str
    target: str
    before: Any
    after: Any
    reason: str
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def canonical_json(value: Any) -> bytes:
    """The one byte string a value hashes and signs as: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def entry_hash(fields: dict[str, Any]) -> str:
    """SHA-256 of the entry's fields (prev_hash included), domain-separated like an RFC 6962 leaf
    (a 0x00 byte before the data)."""
    return hashlib.sha256(b"\x00" + canonical_json({k: fields[k] for k in ENTRY_FIELDS})).hexdigest()


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short, stable id of a public key: the first 16 hex digits of SHA-256 over its raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def checkpoint_message(checkpoint: dict[str, Any]) -> bytes:
    """The bytes a checkpoint's signature covers: a context string, then seq, head, time, key_id."""
    return _CHECKPOINT_CONTEXT + canonical_json({k: checkpoint[k] for k in ("seq", "head", "time", "key_id")})


def checkpoints_path(path: Path) -> Path:
    return Path(f"{path}.checkpoints")


def public_key_path(path: Path) -> Path:
    return Path(f"{path}.pub")


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _finite(value: Any) -> Any:
    """NaN and infinities as the strings "nan", "inf", "-inf" (JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _plain(value: Any, where: str) -> Any:
    """`value` as plain JSON (what it will read back as), refusing secrets."""
    plain = json.loads(json.dumps(_finite(value), default=str))
    _refuse_secrets(plain, where)
    return plain


def _refuse_secrets(value: Any, where: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if _SECRET_KEY_RE.search(str(k)):
                raise ValueError(
                    f"audit {where}: key {k!r} looks like a secret (password, token or hash); the audit record "
                    "never holds one: record that it changed (e.g. {'password_changed': True}) instead"
                )
            _refuse_secrets(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _refuse_secrets(v, f"{where}[{i}]")
    elif isinstance(value, str) and _SECRET_VALUE_RE.match(value):
        raise ValueError(f"audit {where}: the value is a password hash; the audit record never holds one")


class AuditRecord:
    """Appends to, and reads, one audit record. Safe across threads and processes: each append
    takes an exclusive `flock` on `<path>.lock` and re-reads the last entry under it.

    Call `append` BEFORE the action it records; if it raises, do not act."""

    def __init__(self, path: Path, key_path: Path | None = None, *, checkpoint_every: int = 50) -> None:
        self.path = Path(path)
        self.key_path = Path(key_path) if key_path is not None else self.path.with_suffix(".key")
        self.checkpoint_every = max(1, int(checkpoint_every))
        self.checkpoints_path = checkpoints_path(self.path)
        self.public_key_path = public_key_path(self.path)
        self._lock_path = Path(f"{self.path}.lock")
        self._thread_lock = threading.Lock()
        self._signer: Ed25519PrivateKey | None = None

    # -- writing ---------------------------------------------------------------------------

    def append(
        self,
        actor: str,
        role: str,
        action: str,
        target: str = "",
        *,
        source: str = "",
        before: object = None,
        after: object = None,
        reason: str = "",
    ) -> AuditEntry:
        """Write one entry and return it. Raises ValueError for an entry that must not be written
        (no actor, malformed action, a secret in before/after) and AuditError when the file
        cannot be written; in both cases the caller must not perform the action."""
        if not str(actor).strip():
            raise ValueError(f"audit {action}: no actor; every entry says who acted (a user name, or the OS user)")
        if not _ACTION_RE.match(str(action)):
            raise ValueError(f"audit action {action!r} is not a dotted name such as 'alarm.ack' (part.verb)")
        fields: dict[str, Any] = {
            "actor": str(actor),
            "role": str(role),
            "source": str(source),
            "action": str(action),
            "target": str(target),
            "before": _plain(before, f"{action} before"),
            "after": _plain(after, f"{action} after"),
            "reason": str(reason),
        }
        for name in ("actor", "role", "source", "target", "reason"):
            _refuse_secrets(fields[name], f"{action} {name}")
        with self._locked():
            last = self._last_entry()
            fields["seq"] = last["seq"] + 1 if last else 1
            fields["prev_hash"] = last["hash"] if last else GENESIS
            fields["time"] = _utc_now()
            fields["hash"] = entry_hash(fields)
            ordered = {k: fields[k] for k in (*ENTRY_FIELDS, "hash")}
            self._write_line(self.path, ordered)
            if fields["seq"] % self.checkpoint_every == 0:
                self._checkpoint_locked(fields["seq"], fields["hash"])
        return AuditEntry(**ordered)

    def checkpoint(self) -> dict[str, Any] | None:
        """Sign the current chain head unless the last checkpoint already covers it; returns the
        new checkpoint (None when nothing was new)."""
        with self._locked():
            last = self._last_entry()
            if last is None:
                return None
            done = self._last_checkpoint()
            if done is not None and done["seq"] >= last["seq"]:
                return None
            return self._checkpoint_locked(last["seq"], last["hash"])

    def close(self) -> None:
        """Sign a checkpoint of what was appended since the last one (call on exit)."""
        if self.path.exists():
            self.checkpoint()

    def __enter__(self) -> AuditRecord:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------------

    def entries(self) -> list[AuditEntry]:
        """Every entry as written (no verification: see `verify_record`); lines that are not
        entries are skipped here and reported by the verifier."""
        out: list[AuditEntry] = []
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return out
        except OSError as exc:
            raise AuditError(
                f"audit record {self.path} cannot be read ({exc.strerror}); check its permissions"
            ) from None
        for line in text.splitlines():
            try:
                doc = json.loads(line)
                out.append(AuditEntry(**{k: doc[k] for k in (*ENTRY_FIELDS, "hash")}))
            except (ValueError, KeyError, TypeError):
                continue
        return out

    # -- internals -------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o640)
            except OSError as exc:
                raise self._unwritable(self._lock_path, exc) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the lock

    def _unwritable(self, path: Path, exc: OSError) -> AuditError:
        return AuditError(
            f"audit record {path} cannot be written ({exc.strerror or exc}); make its folder writable by this user "
            "or set audit.path to a writable file. The audited action was not performed"
        )

    def _write_line(self, path: Path, doc: dict[str, Any]) -> None:
        data = (json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False) + "\n").encode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError(28, f"short write ({written} of {len(data)} bytes)")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise self._unwritable(path, exc) from None

    def _last_line(self, path: Path) -> str | None:
        """The last line of a file (None when empty or missing); AuditError when it is cut off."""
        try:
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                end = f.tell()
                if end == 0:
                    return None
                pos, chunk = end, b""
                while pos > 0:
                    step = min(4096, pos)
                    pos -= step
                    f.seek(pos)
                    chunk = f.read(step) + chunk
                    if chunk.count(b"\n") >= 2 or pos == 0:
                        break
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise AuditError(f"audit record {path} cannot be read ({exc.strerror}); check its permissions") from None
        if not chunk.endswith(b"\n"):
            raise AuditError(
                f"the last line of {path} is incomplete (a write was cut off, or the file was edited); nothing more "
                f"is appended until it is repaired: run `gridverse audit verify --path {self.path}`"
            )
        return chunk[:-1].rsplit(b"\n", 1)[-1].decode("utf-8", errors="replace")

    def _last_entry(self) -> dict[str, Any] | None:
        line = self._last_line(self.path)
        if line is None:
            return None
        try:
            doc = json.loads(line)
            if not isinstance(doc.get("seq"), int) or not isinstance(doc.get("hash"), str):
                raise ValueError("no seq or hash")
        except ValueError:
            raise AuditError(
                f"the last line of {self.path} is not an audit entry; nothing more is appended until the record is "
                f"checked: run `gridverse audit verify --path {self.path}`"
            ) from None
        return doc

    def _last_checkpoint(self) -> dict[str, Any] | None:
        try:
            line = self._last_line(self.checkpoints_path)
            return json.loads(line) if line else None
        except (AuditError, ValueError):
            return None  # a damaged checkpoint file: the next checkpoint is written anyway; verify reports it

    def _load_signer(self) -> Ed25519PrivateKey:
        if self._signer is not None:
            return self._signer
        path = self.key_path
        try:
            if path.exists():
                mode = path.stat().st_mode & 0o777
                if mode & 0o077:
                    raise AuditError(
                        f"audit signing key {path} is readable by others (mode {mode:o}); run `chmod 600 {path}`"
                    )
                key = serialization.load_pem_private_key(path.read_bytes(), password=None)
                if not isinstance(key, Ed25519PrivateKey):
                    raise AuditError(f"audit signing key {path} is not an Ed25519 key; move it away to create one")
            else:
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                key = Ed25519PrivateKey.generate()
                pem = key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    os.write(fd, pem)
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except AuditError:
            raise
        except ValueError as exc:
            raise AuditError(f"audit signing key {path} cannot be loaded ({exc}); restore it from backup") from None
        except OSError as exc:
            raise AuditError(
                f"audit signing key {path} cannot be created or read ({exc.strerror or exc}); make its folder "
                "writable by this user or set audit.key_path"
            ) from None
        pub_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        pub_path = self.public_key_path
        if pub_path.exists():
            if pub_path.read_bytes().strip() != pub_pem.strip():
                raise AuditError(
                    f"public key {pub_path} does not belong to the signing key {path} (one of them was replaced); "
                    "keep both as they were and run `gridverse audit verify` to see what else changed"
                )
        else:
            try:
                pub_path.write_bytes(pub_pem)
            except OSError as exc:
                raise self._unwritable(pub_path, exc) from None
        self._signer = key
        return key

    def _checkpoint_locked(self, seq: int, head: str) -> dict[str, Any]:
        key = self._load_signer()
        cp: dict[str, Any] = {"seq": seq, "head": head, "time": _utc_now(), "key_id": key_id(key.public_key())}
        cp["signature"] = base64.b64encode(key.sign(checkpoint_message(cp))).decode()
        self._write_line(self.checkpoints_path, cp)
        return cp


_OPEN: dict[tuple[Path, Path, int], AuditRecord] = {}
_OPEN_LOCK = threading.Lock()


def open_audit(settings: Settings) -> AuditRecord:
    """The record configured in `settings.audit`, one object per process for each path; it signs
    a checkpoint of its unsigned tail when the process exits."""
    cfg = settings.audit
    key = (Path(cfg.path).resolve(), Path(cfg.key_path).resolve(), cfg.checkpoint_every)
    with _OPEN_LOCK:
        record = _OPEN.get(key)
        if record is None:
            record = AuditRecord(cfg.path, cfg.key_path, checkpoint_every=cfg.checkpoint_every)
            _OPEN[key] = record
            atexit.register(_close_quietly, record)
        return record


def _close_quietly(record: AuditRecord) -> None:
    with contextlib.suppress(AuditError, ValueError):  # exiting: the verifier reports the unsigned tail
        record.close()
