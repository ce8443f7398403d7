"""Poll Modbus TCP devices: one schedule per device, block reads, failures become point quality."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from gateway.blocks import ReadBlock, plan_reads
from gateway.codec import BlockUnpacker, DecodeError, Raw, to_si
from gridverse.config import (
    DeviceConfig,
    DeviceProfile,
    GatewayConfig,
    RegisterTable,
    SubstationConfig,
)
from gridverse.points import TELEMETRY, Point, Quality, Record, Source, series_tags, telemetry_fields

log = logging.getLogger(__name__)

#: Distinct failure reasons a device's status keeps (and logs once each); the rest are counted together.
_MAX_REASONS = 64


class DeviceUnavailable(Exception):
    """The device did not answer: connection refused or lost, timed out, or a Modbus gateway said
    the device behind it did not answer (exception 10 or 11). Its points become `comm_fail`."""


class InvalidAnswer(Exception):
    """The device answered, but not with the registers asked: a Modbus exception (illegal
    address, device failure, busy, ...) or a reply of the wrong length. Its points become
    `invalid`; the device is up."""


#: Modbus exception codes that mean "no answer from the device behind a gateway": 10 (gateway
#: path unavailable) and 11 (gateway target device failed to respond). A TCP-to-serial gateway
#: sends them when the device itself is silent, so they count as no answer (comm_fail, device
#: down, the comm_fail alarm), exactly as a timeout would. fieldsim's dropout answers with 11.
NO_ANSWER_CODES = frozenset({10, 11})

_EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


def describe_exception(code: object) -> str:
    """`Modbus exception 2 (illegal data address)`."""
    name = _EXCEPTION_NAMES.get(code) if isinstance(code, int) else None
    return f"Modbus exception {code}" + (f" ({name})" if name else "")


@dataclass
class DeviceStatus:
    up: bool | None = None  # None until the first poll
    last_error: str = ""
    polls: int = 0
    failures: int = 0
    on_time: int = 0
    late: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


class RtuConnection:
    """One TCP connection per RTU; requests to its unit ids take turns."""

    def __init__(self, substation: SubstationConfig, config: GatewayConfig) -> None:
        self.substation = substation
        self.client = AsyncModbusTcpClient(
            substation.host,
            port=substation.port,
            timeout=config.timeout_s,
            retries=config.retries,
            reconnect_delay=0.5,
            reconnect_delay_max=30.0,
        )
        self.lock = asyncio.Lock()

    async def read(self, block: ReadBlock, unit_id: int) -> list[int] | list[bool]:
        async with self.lock:
            if not self.client.connected and not await self.client.connect():
                raise DeviceUnavailable(f"{self.substation.host}:{self.substation.port} refused the connection")
            read = {
                RegisterTable.COIL: self.client.read_coils,
                RegisterTable.DISCRETE: self.client.read_discrete_inputs,
                RegisterTable.HOLDING: self.client.read_holding_registers,
                RegisterTable.INPUT: self.client.read_input_registers,
            }[block.table]
            try:
                resp = await read(block.address, count=block.count, device_id=unit_id)
            except (TimeoutError, ModbusException, OSError) as exc:
                raise DeviceUnavailable(f"no answer ({type(exc).__name__}: {exc})") from exc
        where = f"reading {block.table.value} {block.address}+{block.count}"
        if resp.isError():
            code = getattr(resp, "exception_code", "?")
            if code in NO_ANSWER_CODES:
                raise DeviceUnavailable(f"{describe_exception(code)} {where}")
            raise InvalidAnswer(f"{describe_exception(code)} {where}")
        if block.table in (RegisterTable.COIL, RegisterTable.DISCRETE):
            bits = list(getattr(resp, "bits", None) or [])
            if len(bits) < block.count:
                raise InvalidAnswer(f"{where}: the reply holds {len(bits)} bits")
            return bits[: block.count]
        registers = list(getattr(resp, "registers", None) or [])
        if len(registers) != block.count:
            raise InvalidAnswer(f"{where}: the reply holds {len(registers)} registers")
        return registers

    def close(self) -> None:
        self.client.close()


class Reading(NamedTuple):
    """One point of one poll, before it becomes a Point (for people) or a Record (for the store)."""

    name: str
    value: float | None
    quality: Quality
    text: str = ""


class DevicePoller:
    """Polls one device on its own schedule; never lets one slow device delay another.

    Points may sit in poll groups with their own periods (profile `groups`); each group has its
    own block reads and timetable. A point with a deadband is reported only when it moves by
    more than that, when its quality changes, or every `gateway.report_every_s` as a heartbeat.
    SunSpec scale-factor registers are read with their group and applied to the points that
    name them. `run` hands each poll's rows to `sink` as historian Records (the hot path: no
    Point objects); `poll_once` returns Points, for `gateway test` and for people."""

    def __init__(
        self,
        site: str,
        substation: SubstationConfig,
        device: DeviceConfig,
        profile: DeviceProfile,
        connection: RtuConnection,
        config: GatewayConfig,
        sink: Callable[[list[Record]], None],
        *,
        on_poll: Callable[[str, float], None] | None = None,
    ) -> None:
        self.site, self.substation, self.device, self.profile = site, substation, device, profile
        self.on_poll = on_poll
        self.connection = connection
        self.config = config
        self.sink = sink
        self._group_blocks = {
            name: [BlockUnpacker(b, profile) for b in plan_reads(g, config.max_gap)]
            for name, g in _group_profiles(profile).items()
        }
        self._by_name = {p.name: p for p in profile.points}
        self._tags = {
            p.name: series_tags(site, substation.name, device.bay, device.name, p.name, Source.MODBUS)
            for p in profile.points
        }
        self._reported: dict[str, tuple[float | None, Quality, float]] = {}  # value, quality, monotonic
        self._block_faults: dict[tuple[RegisterTable, int], str] = {}
        self.suppressed = 0
        self.status = DeviceStatus()

    async def poll_once(self, groups: list[str] | None = None) -> list[Point]:
        """Read the blocks of `groups` (None: all; an empty list: none); a failed block yields its
        points with a bad quality and no value."""
        t, readings = await self._poll(groups)
        return [
            Point(
                site=self.site,
                substation=self.substation.name,
                bay=self.device.bay,
                device=self.device.name,
                name=r.name,
                source=Source.MODBUS,
                time_ns=t,
                value=r.value,
                quality=r.quality,
                unit=self._by_name[r.name].si_unit,
                extra={"text": r.text} if r.text else {},
            )
            for r in readings
        ]

    async def _poll(self, groups: list[str] | None) -> tuple[int, list[Reading]]:
        """Read the blocks of `groups` (None: every group; an empty list: none). A block that
        fails becomes points without values: `comm_fail` when the device did not answer,
        `invalid` when it answered with an exception or a reply that cannot be decoded; the
        reason is logged once per block (and once when the block recovers), never raised."""
        t = time.time_ns()
        raws: dict[str, Raw] = {}
        readings: list[Reading] = []
        failure = ""
        names = list(self._group_blocks) if groups is None else groups
        for unpacker in [u for g in names for u in self._group_blocks[g]]:
            block = unpacker.block
            try:
                data = await self.connection.read(block, self.device.unit_id)
                unpacked = list(unpacker.unpack(data))
            except DeviceUnavailable as exc:
                failure = str(exc)
                readings += [Reading(p.name, None, Quality.COMM_FAIL) for p in block.points]
                continue
            except Exception as exc:  # InvalidAnswer, or a reply nobody foresaw: the poller lives on
                reason = str(exc) if isinstance(exc, InvalidAnswer) else f"{type(exc).__name__}: {exc}"
                self._block_failed(block, reason)
                readings += [Reading(p.name, None, Quality.INVALID) for p in block.points]
                continue
            self._block_ok(block)
            for p, raw in unpacked:
                if isinstance(raw, DecodeError):
                    readings.append(self._invalid(p.name, raw))
                else:
                    raws[p.name] = raw
        readings += [self._reading(name, raw, raws) for name, raw in raws.items()]
        self._record(failure)
        return t, self._report_by_exception(readings)

    def _block_failed(self, block: ReadBlock, reason: str) -> None:
        self._count(reason, quiet=True)
        key = (block.table, block.address)
        if self._block_faults.get(key) != reason:
            self._block_faults[key] = reason
            log.warning(
                "device %s: %s %d+%d gives invalid points: %s",
                self.device.name,
                block.table.value,
                block.address,
                block.count,
                reason,
            )

    def _block_ok(self, block: ReadBlock) -> None:
        if self._block_faults.pop((block.table, block.address), None) is not None:
            log.info("device %s: %s %d+%d reads again", self.device.name, block.table.value, block.address, block.count)

    def _count(self, reason: str, *, quiet: bool = False) -> None:
        """Count a failure reason in the device's status; log it the first time it is seen."""
        reasons = self.status.reasons
        if reason not in reasons and len(reasons) >= _MAX_REASONS:
            reason = "(other reasons)"
        if reason not in reasons and not quiet:
            log.warning("device %s: %s", self.device.name, reason)
        reasons[reason] = reasons.get(reason, 0) + 1

    def _reading(self, name: str, raw: Raw, raws: dict[str, Raw]) -> Reading:
        p = self._by_name[name]
        if isinstance(raw, str):
            return Reading(name, None, Quality.GOOD, raw)
        if isinstance(raw, bool):
            return Reading(name, float(raw), Quality.GOOD)
        scale_factor = None
        try:
            if p.scale_register is not None:
                sf = raws.get(p.scale_register)
                if sf is None or isinstance(sf, str):
                    raise DecodeError(
                        f"{self.profile.name}/{name}: its scale factor {p.scale_register} was not read "
                        "validly in the same poll (put both in one group)"
                    )
                scale_factor = int(sf)
            return Reading(name, to_si(p, raw, self.profile, scale_factor), Quality.GOOD)
        except DecodeError as exc:
            return self._invalid(name, exc)

    def _invalid(self, name: str, exc: DecodeError) -> Reading:
        self._count(str(exc))
        return Reading(name, None, Quality.INVALID)

    def _report_by_exception(self, readings: list[Reading]) -> list[Reading]:
        now = time.monotonic()
        heartbeat = self.config.report_every_s
        out = []
        for r in readings:
            band = self._by_name[r.name].deadband
            last = self._reported.get(r.name)
            if band is not None and last is not None and r.value is not None and last[0] is not None:
                quiet = abs(r.value - last[0]) <= band and r.quality is last[1] and now - last[2] < heartbeat
                if quiet:
                    self.suppressed += 1
                    continue
            if band is not None:
                self._reported[r.name] = (r.value, r.quality, now)
            out.append(r)
        return out

    def _records(self, t: int, readings: list[Reading]) -> list[Record]:
        tags = self._tags
        return [Record(TELEMETRY, tags[r.name], telemetry_fields(r.value, r.quality, r.text), t) for r in readings]

    def _record(self, failure: str) -> None:
        st = self.status
        st.polls += 1
        was_up = st.up
        if failure:
            st.failures += 1
            st.last_error = failure
            st.up = False
            if was_up is not False:
                log.warning("device %s down: %s", self.device.name, failure)
        else:
            st.up = True
            if was_up is False:
                log.info("device %s back up", self.device.name)

    async def run(self) -> None:
        """Each group on its own period; after an outage, missed slots are skipped, not burst.
        Restartable: a second call (after a crash or a cancel) starts a fresh timetable."""
        default = self.config.poll_interval_s
        periods = {g: self.profile.period_of(g, default) for g in self._group_blocks}
        due = dict.fromkeys(periods, time.monotonic())
        while True:
            now = time.monotonic()
            groups = [g for g, at in due.items() if at <= now + 1e-3]
            if groups:  # woken early (or nothing due): poll nothing, not everything
                for g in groups:
                    if now - due[g] > periods[g] * 0.5:
                        self.status.late += 1
                    else:
                        self.status.on_time += 1
                started = time.perf_counter()
                t, readings = await self._poll(groups)
                if self.on_poll is not None:
                    self.on_poll(self.device.name, time.perf_counter() - started)
                if readings:
                    self.sink(self._records(t, readings))
                now = time.monotonic()
                for g in groups:
                    due[g] += periods[g]
                    if due[g] < now:
                        due[g] = now + periods[g] - ((now - due[g]) % periods[g])
            await asyncio.sleep(max(0.0, min(due.values(), default=now + default) - now))


def _group_profiles(profile: DeviceProfile) -> dict[str, DeviceProfile]:
    """One profile per poll group; a scale-factor point joins every group that uses it."""
    names: dict[str, set[str]] = {}
    for p in profile.points:
        names.setdefault(p.group, set()).add(p.name)
        if p.scale_register is not None:
            names[p.group].add(p.scale_register)
    out = {}
    for group, members in names.items():
        points = [p for p in profile.points if p.name in members]
        out[group] = profile.model_copy(update={"points": points})
    return out
