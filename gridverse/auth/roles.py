"""Roles and permissions after IEC 62351-8 (role-based access control for power systems).

The standard's roles, mapped onto what this console does:

- VIEWER sees the grid, the substation views and the anomaly results; changes nothing.
- OPERATOR is a viewer who also handles alarms (acknowledge, shelve) and runs the twin's
  studies (N-1, what-if); studies change nothing in the field but cost CPU and are audited.
- ENGINEER is an operator who may also write to devices (set points, breakers).
- TECHNICIAN (the standard's INSTALLER) sees the grid and the substation and records
  inspections; no alarm handling, no writes from the console.
- ANALYST (not in 62351-8; the anomaly lab's user) sees the grid and anomalies, trains and
  deploys models. No alarm handling: deploying a model is audited and is not an operating act.
- SECADM manages users and reads the audit record; it operates nothing (separation of duties:
  who grants rights does not use them).
- SECAUD only reads the audit record.

Security roles deliberately hold no `grid.view`: a security auditor needs the record, not the
grid. Every check is deny-by-default: a permission not listed for a role is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ENGINEER = "engineer"
    TECHNICIAN = "technician"
    ANALYST = "analyst"
    SECADM = "secadm"
    SECAUD = "secaud"


class Permission(StrEnum):
    GRID_VIEW = "grid.view"
    ALARM_ACK = "alarm.ack"
    ALARM_SHELVE = "alarm.shelve"
    ALARM_SERVICE = "alarm.service"  # remove an alarm from service (maintenance) and return it
    TWIN_N1 = "twin.n1"
    TWIN_WHATIF = "twin.whatif"
    DEVICE_WRITE = "device.write"
    INSPECT_VIEW = "inspect.view"
    INSPECT_RECORD = "inspect.record"
    ANOMALY_VIEW = "anomaly.view"
    ANOMALY_TRAIN = "anomaly.train"
    ANOMALY_DEPLOY = "anomaly.deploy"
    AUDIT_VIEW = "audit.view"
    USERS_MANAGE = "users.manage"


P = Permission
_VIEWER = frozenset({P.GRID_VIEW, P.INSPECT_VIEW, P.ANOMALY_VIEW})
_OPERATOR = _VIEWER | {P.ALARM_ACK, P.ALARM_SHELVE, P.TWIN_N1, P.TWIN_WHATIF}

#: What each role may do; anything absent is refused.
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: _VIEWER,
    Role.OPERATOR: _OPERATOR,
    Role.ENGINEER: _OPERATOR | {P.DEVICE_WRITE, P.ALARM_SERVICE},
    Role.TECHNICIAN: frozenset({P.GRID_VIEW, P.INSPECT_VIEW, P.INSPECT_RECORD}),
    Role.ANALYST: frozenset({P.GRID_VIEW, P.ANOMALY_VIEW, P.ANOMALY_TRAIN, P.ANOMALY_DEPLOY}),
    Role.SECADM: frozenset({P.USERS_MANAGE, P.AUDIT_VIEW}),
    Role.SECAUD: frozenset({P.AUDIT_VIEW}),
}


@dataclass(frozen=True)
class User:
    """A console user as the pages see it (never carries the password hash)."""

    name: str
    role: Role
    disabled: bool = False

    def can(self, permission: Permission) -> bool:
        """Whether this user may do `permission` (a disabled user may do nothing)."""
        return not self.disabled and permission in ROLE_PERMISSIONS.get(self.role, frozenset())
