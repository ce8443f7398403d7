"""Writing to devices: off unless the profile marks the point writable AND the operator enables
writes (`gateway.writes_enabled`). Every refusal says which of the two is missing."""

from __future__ import annotations

import logging

from gateway.codec import DecodeError, decode_raw, encode
from gateway.modbus_poller import DeviceUnavailable, RtuConnection
from gridverse.config import DataType, RegisterTable, Settings

log = logging.getLogger(__name__)


class WriteRefused(Exception):
    """The write is not allowed or not possible; the message names the device, point and remedy."""


async def write_point(
    settings: Settings, device: str, point: str, value: float, connection: RtuConnection | None = None
) -> list[int] | bool:
    """Write an SI value to a device point; returns what was written (registers or the bit)."""
    found = [(sub, d) for sub in settings.site.substations for d in sub.devices if d.name == device]
    if not found:
        raise WriteRefused(f"no device {device!r} in site.substations")
    sub, dev = found[0]
    profile = settings.profiles[dev.profile]
    p = next((q for q in profile.points if q.name == point), None)
    if p is None:
        raise WriteRefused(f"{device}: profile {profile.name} has no point {point!r}")
    if not p.writable:
        raise WriteRefused(f"{device}/{point}: profile {profile.name} does not mark it writable (writable: true)")
    if not settings.gateway.writes_enabled:
        raise WriteRefused(f"{device}/{point}: writes are disabled; an operator must set gateway.writes_enabled")
    if p.table in (RegisterTable.INPUT, RegisterTable.DISCRETE):
        raise WriteRefused(f"{device}/{point}: {p.table.value} registers are read-only in Modbus")
    target = sub.model_copy(update={"host": settings.gateway.rtu_host}) if settings.gateway.rtu_host else sub
    conn = connection or RtuConnection(target, settings.gateway)
    client = conn.client
    try:
        if not client.connected and not await client.connect():
            raise DeviceUnavailable(f"{target.host}:{target.port} refused the connection")
        if p.type == DataType.BIT:
            bit = value >= 0.5
            resp = await client.write_coil(p.address, bit, device_id=dev.unit_id)
            written: list[int] | bool = bit
        else:
            scale_factor = None
            if p.scale_register is not None:
                sf = next(q for q in profile.points if q.name == p.scale_register)
                r = await client.read_holding_registers(sf.address, count=1, device_id=dev.unit_id)
                if r.isError():
                    raise DeviceUnavailable(f"reading scale factor {sf.name}: {r}")
                scale_factor = int(decode_raw(sf, list(r.registers), profile))
            try:
                words = encode(p, value, profile, scale_factor)
            except DecodeError as exc:
                raise WriteRefused(f"{device}/{point}: {exc}") from None
            resp = await client.write_registers(p.address, words, device_id=dev.unit_id)
            written = words
        if resp.isError():
            raise DeviceUnavailable(f"{device}/{point}: the device answered {resp}")
    finally:
        if connection is None:
            conn.close()
    log.warning("wrote %s/%s = %s (%s)", device, point, value, written)  # an audit line, always
    return written
