"""The tamper-evident audit record: who did what, when, from where, to what, and why.

`AuditRecord.append` BEFORE acting (it raises when the entry cannot be written: then do not act);
`verify_record` checks the hash chain and the signed checkpoints; `gridverse audit verify|show`."""

from gridverse.audit.config import AuditConfig
from gridverse.audit.record import ACTIONS, AuditEntry, AuditError, AuditRecord, open_audit
from gridverse.audit.verify import Problem, VerifyReport, verify_record

__all__ = [
    "ACTIONS",
    "AuditConfig",
    "AuditEntry",
    "AuditError",
    "AuditRecord",
    "Problem",
    "VerifyReport",
    "open_audit",
    "verify_record",
]
