"""The `audit` section: where the tamper-evident audit record and its signing key live."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from gridverse.configbase import Strict


class AuditConfig(Strict):
    """The append-only audit record (hash-chained JSON lines) and its Ed25519 checkpoint key."""

    path: Path = Field(default=Path("var/audit/audit.jsonl"), description="the record; its public key is <path>.pub")
    key_path: Path = Field(
        default=Path("var/audit/audit.key"),
        description="Ed25519 private key that signs checkpoints; created (mode 0600) on first use",
    )
    checkpoint_every: int = Field(default=50, ge=1, description="sign a checkpoint every this many entries")
