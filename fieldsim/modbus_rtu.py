"""A substation RTU served over Modbus TCP: one pymodbus server, one unit id per bay device.

Registers are laid out from the device profiles (the same files the gateway decodes with) and are
refreshed from the latest simulation step through pymodbus' SimDevice `action` hook.
"""

from __future__ import annotations

import logging
import threading
from functools import partial

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice
from pymodbus.simulator.simutils import SimUtils

from gateway.codec import DecodeError, encode
from gridverse.config import DataType, DeviceConfig, DeviceProfile, RegisterTable, SubstationConfig

log = logging.getLogger(__name__)

_TABLE_OF_FC = {
    1: RegisterTable.COIL,
    5: RegisterTable.COIL,
    15: RegisterTable.COIL,
    2: RegisterTable.DISCRETE,
    3: RegisterTable.HOLDING,
    6: RegisterTable.HOLDING,
    16: RegisterTable.HOLDING,
    4: RegisterTable.INPUT,
}
_BIT_TABLES = (RegisterTable.COIL, RegisterTable.DISCRETE)


class DeviceImage:
    """The register image of one device, rewritten at every simulation step."""

    def __init__(self, device: DeviceConfig, profile: DeviceProfile) -> None:
        self.device = device
        self.profile = profile
        self.size = {
            t: max((p.address + p.width for p in profile.points if p.table == t), default=0) for t in RegisterTable
        }
        self.words: dict[RegisterTable, list[int]] = {t: [0] * n for t, n in self.size.items() if t not in _BIT_TABLES}
        self.bits: dict[RegisterTable, list[bool]] = {t: [False] * n for t, n in self.size.items() if t in _BIT_TABLES}
        self.silent = False
        self.ready = False
        self.lock = threading.Lock()

    def update(self, values: dict[str, float], silent: bool) -> None:
        words = {t: list(v) for t, v in self.words.items()}
        bits = {t: list(v) for t, v in self.bits.items()}
        for point in self.profile.points:
            value = values[point.name]
            if point.type == DataType.BIT:
                bits[point.table][point.address] = value >= 0.5
                continue
            try:
                regs = encode(point, value, self.profile)
            except DecodeError as exc:  # out of range: a real device would saturate
                log.warning("simulated value out of register range: %s", exc)
                continue
            words[point.table][point.address : point.address + point.width] = regs
        with self.lock:
            self.words, self.bits, self.silent, self.ready = words, bits, silent, True

    def sim_device(self) -> SimDevice:
        blocks: list[list[SimData]] = []
        for table in (RegisterTable.COIL, RegisterTable.DISCRETE, RegisterTable.HOLDING, RegisterTable.INPUT):
            n = self.size[table]
            if n == 0 and table in _BIT_TABLES:  # pymodbus needs a bit block; _refresh refuses it
                blocks.append([SimData(0, values=[False] * 16, datatype=SimType.BITS)])
            elif n == 0:
                blocks.append([SimData(0, count=1, datatype=SimType.INVALID)])
            elif table in _BIT_TABLES:
                padded = -(-n // 16) * 16
                blocks.append([SimData(0, values=[False] * padded, datatype=SimType.BITS, readonly=True)])
            else:
                blocks.append([SimData(0, count=n, values=0, datatype=SimType.REGISTERS, readonly=True)])
        return SimDevice(
            id=self.device.unit_id,
            simdata=(blocks[0], blocks[1], blocks[2], blocks[3]),
            action=partial(_refresh, self),
        )


async def _refresh(
    image: DeviceImage,
    function_code: int,
    _start_address: int,
    _address: int,
    _count: int,
    registers: list[int],
    set_values: list[int] | list[bool] | None,
) -> ExcCodes | None:
    """Copy the device's current image into pymodbus' block before it answers a request."""
    with image.lock:
        if image.silent or not image.ready:
            return ExcCodes.GATEWAY_NO_RESPONSE
        if set_values is not None:
            return ExcCodes.ILLEGAL_FUNCTION  # simulated devices are read-only
        table = _TABLE_OF_FC.get(function_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        if image.size[table] == 0:
            return ExcCodes.ILLEGAL_ADDRESS
        if table in _BIT_TABLES:
            bits = image.bits[table]
            padded = bits + [False] * (-len(bits) % 16)
            regs = SimUtils.bitsToRegisters(padded)
        else:
            regs = image.words[table]
        registers[: len(regs)] = regs
    return None


class RtuServer:
    """One substation's RTU: a Modbus TCP server on (host, port) with a unit id per device."""

    def __init__(self, substation: SubstationConfig, images: dict[str, DeviceImage]) -> None:
        self.substation = substation
        self.images = images
        self._server: ModbusTcpServer | None = None

    async def start(self) -> None:
        devices = [self.images[d.name].sim_device() for d in self.substation.devices]
        self._server = ModbusTcpServer(devices, address=(self.substation.host, self.substation.port))
        try:
            await self._server.serve_forever(background=True)
        except RuntimeError as exc:
            raise OSError(
                f"RTU {self.substation.name}: cannot listen on "
                f"{self.substation.host}:{self.substation.port} (port in use?); "
                "change site.substations[].port"
            ) from exc

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
