"""Audit entries for actions taken from the command line (`gridverse gateway write`, `gridverse
twin n1`): the actor is the operating-system user, the source is "cli"."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
from typing import TYPE_CHECKING, Any

from gridverse.audit.record import AuditEntry, open_audit

if TYPE_CHECKING:
    from gridverse.config import Settings

#: The role recorded for an action taken from a shell: no sign-in, the OS account is the actor.
CLI_ROLE = "os-user"


def os_user() -> str:
    """The operating-system user running this process (never empty)."""
    try:
        return getpass.getuser() or "unknown"
    except (KeyError, OSError):  # no passwd entry for the uid (containers)
        import os

        return f"uid:{os.getuid()}"


def audit_cli(
    settings: Settings, action: str, target: str, *, before: Any = None, after: Any = None, reason: str = ""
) -> AuditEntry:
    """Append one entry for a command-line action BEFORE it is performed; raises (AuditError,
    ValueError) when it cannot be written, and then the command must not act."""
    return open_audit(settings).append(
        os_user(), CLI_ROLE, action, target, source="cli", before=before, after=after, reason=reason
    )


async def _read_now(settings: Settings, device: str, point: str) -> float | None:
    from gateway.codec import decode
    from gateway.modbus_poller import RtuConnection
    from gridverse.config import RegisterTable

    sub, dev = settings.device(device)
    profile = settings.profiles[dev.profile]
    p = next(q for q in profile.points if q.name == point)
    conn = RtuConnection(settings.gateway.reach(sub), settings.gateway)
    try:
        if not await conn.client.connect():
            return None
        if p.table == RegisterTable.COIL:
            bits = await conn.client.read_coils(p.address, count=1, device_id=dev.unit_id)
            return None if bits.isError() else float(bool(bits.bits[0]))
        read = (
            conn.client.read_input_registers if p.table == RegisterTable.INPUT else conn.client.read_holding_registers
        )
        resp = await read(p.address, count=p.width, device_id=dev.unit_id)
        if resp.isError():
            return None
        scale_factor = None
        if p.scale_register is not None:
            sf = next(q for q in profile.points if q.name == p.scale_register)
            r = await conn.client.read_holding_registers(sf.address, count=sf.width, device_id=dev.unit_id)
            if r.isError():
                return None
            scale_factor = int(decode(sf, list(r.registers), profile))
        return decode(p, list(resp.registers), profile, scale_factor)
    finally:
        conn.close()


def point_value_now(settings: Settings, device: str, point: str, timeout_s: float = 3.0) -> float | None:
    """The point's value on the device now, for an entry's `before`; None when it cannot be read
    (unknown device or point, device down, undecodable): the write itself then says why."""
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    with contextlib.suppress(Exception):
        return asyncio.run(asyncio.wait_for(_read_now(settings, device, point), timeout_s))
    return None
