"""Writing to devices: off unless the profile marks the point writable AND the operator enables
writes (`gateway.writes_enabled`). Every refusal says which of the two is missing.

A write never rounds: a value the register cannot hold exactly at the point's scale and scale
factor is refused with the nearest values that can be written. After each write the registers
are read back, and a device that holds something else is an error. Each kind of failure has its
own exception (and `gridverse gateway write` its own exit code), and none is a traceback."""

from __future__ import annotations

import logging
import math

from pymodbus.exceptions import ModbusException

from gateway.codec import DecodeError, EncodeError, decode_raw, encode_exact
from gateway.modbus_poller import RtuConnection, describe_exception
from gridverse.config import DataType, DeviceProfile, ProfilePoint, RegisterTable, Settings

log = logging.getLogger(__name__)


class WriteError(Exception):
    """A write that did not happen, or did not take; the message names device, point and remedy."""

    exit_code = 1


class WriteRefused(WriteError):
    """The write is not allowed: unknown device or point, not writable, writes disabled, read-only."""

    exit_code = 5


class NotRepresentable(WriteRefused):
    """The value cannot be held exactly by the point's registers (or its scale factor is invalid)."""

    exit_code = 6


class DeviceUnreachable(WriteError):
    """The device did not answer, or answered the write with a Modbus exception."""

    exit_code = 7


class WriteNotConfirmed(WriteError):
    """The write was answered, but reading the registers back shows another value (or fails)."""

    exit_code = 8


_IO_ERRORS = (TimeoutError, ModbusException, OSError)


async def write_point(
    settings: Settings, device: str, point: str, value: float, connection: RtuConnection | None = None
) -> list[int] | bool:
    """Write an SI value to a device point, then read it back; returns what was written (registers
    or the bit). Raises a WriteError subclass for anything else."""
    try:
        sub, dev = settings.device(device)
    except KeyError as exc:
        raise WriteRefused(str(exc.args[0])) from None
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
    if p.type == DataType.STRING:
        raise WriteRefused(f"{device}/{point}: string points are not written by the gateway")
    if not math.isfinite(value):
        raise NotRepresentable(f"{device}/{point}: {value} is not a value a register can hold; give a finite number")
    bit = _bit_value(device, point, value) if p.type == DataType.BIT else None
    if bit is None and p.scale_register is None:
        _encode(device, p, value, profile, None)  # refuse before touching the network
    target = settings.gateway.reach(sub)
    conn = connection or RtuConnection(target, settings.gateway)
    down = f"{device}: no answer from {target.host}:{target.port} (substation {sub.name}, unit {dev.unit_id})"
    remedy = "check that the device is on and reachable, then retry; nothing was written"
    try:
        async with conn.lock:
            try:
                if not conn.client.connected and not await conn.client.connect():
                    raise DeviceUnreachable(f"{down}: connection refused or timed out; {remedy}")
                if bit is not None:
                    written: list[int] | bool = bit
                    await _write_bit(conn, device, p, dev.unit_id, bit)
                else:
                    scale_factor = await _scale_factor(conn, device, p, profile, dev.unit_id)
                    words = _encode(device, p, value, profile, scale_factor)
                    await _write_words(conn, device, p, dev.unit_id, words)
                    written = words
            except _IO_ERRORS as exc:
                raise DeviceUnreachable(f"{down} ({type(exc).__name__}); {remedy}") from None
            try:
                await _confirm(conn, device, p, profile, dev.unit_id, written, value)
            except _IO_ERRORS as exc:
                raise WriteNotConfirmed(
                    f"{device}/{point}: the write was answered, but reading {p.table.value} register {p.address} "
                    f"back got no answer ({type(exc).__name__}); check the value with `gridverse gateway test`"
                ) from None
    finally:
        if connection is None:
            conn.close()
    log.warning("wrote %s/%s = %s (%s), read back", device, point, value, written)  # an audit line, always
    return written


def _bit_value(device: str, point: str, value: float) -> bool:
    if value not in (0.0, 1.0):
        raise NotRepresentable(f"{device}/{point}: a bit takes 0 (open/off) or 1 (closed/on), not {value}")
    return value == 1.0


def _encode(device: str, p: ProfilePoint, value: float, profile: DeviceProfile, scale_factor: int | None) -> list[int]:
    try:
        return encode_exact(p, value, profile, scale_factor)
    except EncodeError as exc:
        raise NotRepresentable(f"{device}: {exc}") from None


async def _scale_factor(
    conn: RtuConnection, device: str, p: ProfilePoint, profile: DeviceProfile, unit_id: int
) -> int | None:
    """The point's SunSpec scale factor as the device holds it now (None when it has none)."""
    if p.scale_register is None:
        return None
    sf = next(q for q in profile.points if q.name == p.scale_register)
    r = await _read(conn, sf, unit_id)
    if r.isError():
        raise DeviceUnreachable(
            f"{device}/{p.name}: reading its scale factor {sf.name} ({sf.table.value} register {sf.address}) got "
            f"{describe_exception(getattr(r, 'exception_code', '?'))}; nothing was written"
        )
    try:
        return int(decode_raw(sf, list(r.registers), profile))
    except DecodeError as exc:
        raise NotRepresentable(
            f"{device}/{p.name}: its scale factor cannot be read ({exc}); nothing was written"
        ) from None


async def _read(conn: RtuConnection, p: ProfilePoint, unit_id: int):
    if p.table == RegisterTable.COIL:
        return await conn.client.read_coils(p.address, count=1, device_id=unit_id)
    if p.table == RegisterTable.INPUT:
        return await conn.client.read_input_registers(p.address, count=p.width, device_id=unit_id)
    return await conn.client.read_holding_registers(p.address, count=p.width, device_id=unit_id)


async def _write_bit(conn: RtuConnection, device: str, p: ProfilePoint, unit_id: int, bit: bool) -> None:
    resp = await conn.client.write_coil(p.address, bit, device_id=unit_id)
    if resp.isError():
        raise DeviceUnreachable(
            f"{device}/{p.name}: the device refused the write to coil {p.address}: "
            f"{describe_exception(getattr(resp, 'exception_code', '?'))}; nothing was written"
        )


async def _write_words(conn: RtuConnection, device: str, p: ProfilePoint, unit_id: int, words: list[int]) -> None:
    resp = await conn.client.write_registers(p.address, words, device_id=unit_id)
    if resp.isError():
        raise DeviceUnreachable(
            f"{device}/{p.name}: the device refused {words} at holding register {p.address}: "
            f"{describe_exception(getattr(resp, 'exception_code', '?'))}; nothing was written"
        )


async def _confirm(
    conn: RtuConnection,
    device: str,
    p: ProfilePoint,
    profile: DeviceProfile,
    unit_id: int,
    written: list[int] | bool,
    value: float,
) -> None:
    """Read the registers back: the device must hold exactly what was written."""
    r = await _read(conn, p, unit_id)
    where = f"{p.table.value} register {p.address}"
    if r.isError():
        raise WriteNotConfirmed(
            f"{device}/{p.name}: wrote {written} to {where}, but reading it back got "
            f"{describe_exception(getattr(r, 'exception_code', '?'))}; check the value with `gridverse gateway test`"
        )
    got: list[int] | bool = bool(r.bits[0]) if isinstance(written, bool) else list(r.registers)
    if got != written:
        raise WriteNotConfirmed(
            f"{device}/{p.name}: wrote {written} (= {value:.12g} {p.si_unit}) to {where}, but it reads back {got}; "
            "the device did not take the value (check its mode, limits or write protection)"
        )
