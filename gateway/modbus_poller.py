"""Poll Modbus TCP devices: one schedule per device, block reads, failures become point quality."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from gateway.blocks import ReadBlock, plan_reads
from gateway.codec import DecodeError, decode
from gridverse.config import (
    DataType,
    DeviceConfig,
    DeviceProfile,
    GatewayConfig,
    RegisterTable,
    SubstationConfig,
)
from gridverse.points import Point, Quality, Source

log = logging.getLogger(__name__)


class DeviceUnavailable(Exception):
    """The device did not answer (refused, timed out, or answered with a Modbus exception)."""


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
                raise DeviceUnavailable(
                    f"{self.substation.host}:{self.substation.port} refused the connection"
                )
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
        if resp.isError():
            code = getattr(resp, "exception_code", "?")
            raise DeviceUnavailable(
                f"Modbus exception {code} reading {block.table.value} {block.address}+{block.count}"
            )
        if block.table in (RegisterTable.COIL, RegisterTable.DISCRETE):
            return list(resp.bits[: block.count])
        if len(resp.registers) != block.count:
            raise DeviceUnavailable(
                f"asked {block.count} registers at {block.address}, got {len(resp.registers)}"
            )
        return list(resp.registers)

    def close(self) -> None:
        self.client.close()


class DevicePoller:
    """Polls one device on its own schedule; never lets one slow device delay another."""

    def __init__(
        self,
        site: str,
        substation: SubstationConfig,
        device: DeviceConfig,
        profile: DeviceProfile,
        connection: RtuConnection,
        config: GatewayConfig,
        sink: Callable[[list[Point]], None],
        *,
        on_poll: Callable[[str, float], None] | None = None,
    ) -> None:
        self.site, self.substation, self.device, self.profile = site, substation, device, profile
        self.on_poll = on_poll
        self.connection = connection
        self.config = config
        self.sink = sink
        self.blocks = plan_reads(profile, config.max_gap)
        self.status = DeviceStatus()

    def _point(self, name: str, unit: str, t: int, value: float | None, q: Quality) -> Point:
        return Point(
            site=self.site,
            substation=self.substation.name,
            bay=self.device.bay,
            device=self.device.name,
            name=name,
            source=Source.MODBUS,
            time_ns=t,
            value=value,
            quality=q,
            unit=unit,
        )

    async def poll_once(self) -> list[Point]:
        """Read every block; a failed block yields its points with a bad quality and no value."""
        t = time.time_ns()
        points: list[Point] = []
        failure = ""
        for block in self.blocks:
            try:
                data = await self.connection.read(block, self.device.unit_id)
            except DeviceUnavailable as exc:
                failure = str(exc)
                quality = Quality.COMM_FAIL
                points.extend(self._point(p.name, p.unit, t, None, quality) for p in block.points)
                continue
            for p in block.points:
                offset = p.address - block.address
                if p.type == DataType.BIT:
                    points.append(self._point(p.name, p.unit, t, float(bool(data[offset])),
                                              Quality.GOOD))  # fmt: skip
                    continue
                try:
                    words = [int(w) for w in data[offset : offset + p.width]]
                    value = decode(p, words, self.profile)
                except DecodeError as exc:
                    self.status.reasons[str(exc)] = self.status.reasons.get(str(exc), 0) + 1
                    points.append(self._point(p.name, p.unit, t, None, Quality.INVALID))
                    continue
                points.append(self._point(p.name, p.unit, t, value, Quality.GOOD))
        self._record(failure)
        return points

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
        period = self.config.poll_interval_s
        next_at = time.monotonic()
        while True:
            lateness = time.monotonic() - next_at
            if lateness > period * 0.5:
                self.status.late += 1
            else:
                self.status.on_time += 1
            started = time.perf_counter()
            points = await self.poll_once()
            if self.on_poll is not None:
                self.on_poll(self.device.name, time.perf_counter() - started)
            self.sink(points)
            next_at += period
            now = time.monotonic()
            if next_at < now:  # after an outage, skip missed slots rather than burst
                next_at = now + period - ((now - next_at) % period)
            await asyncio.sleep(next_at - now)
