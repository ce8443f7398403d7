"""Plan Modbus reads: merge a profile's points into as few block reads as the protocol allows."""

from __future__ import annotations

from dataclasses import dataclass

from gridverse.config import DeviceProfile, ProfilePoint, RegisterTable

#: Modbus limits per request: 125 registers (FC3/FC4), 2000 bits (FC1/FC2).
MAX_REGISTERS = 125
MAX_BITS = 2000


@dataclass(frozen=True)
class ReadBlock:
    table: RegisterTable
    address: int
    count: int
    points: tuple[ProfilePoint, ...]


def plan_reads(profile: DeviceProfile, max_gap: int) -> list[ReadBlock]:
    """Adjacent points (at most `max_gap` unused registers apart) share one read, no longer than
    the protocol and the profile's `max_registers` / `max_bits` allow (many meters refuse more
    than 16 or 32 registers a request). A point never straddles two reads."""
    blocks: list[ReadBlock] = []
    for table in RegisterTable:
        points = sorted((p for p in profile.points if p.table == table), key=lambda p: p.address)
        bits = table in (RegisterTable.COIL, RegisterTable.DISCRETE)
        limit = min(MAX_BITS, profile.max_bits) if bits else min(MAX_REGISTERS, profile.max_registers)
        current: list[ProfilePoint] = []
        for p in points:
            if current:
                start = current[0].address
                end = max(q.address + q.width for q in current)
                if p.address - end <= max_gap and p.address + p.width - start <= limit:
                    current.append(p)
                    continue
                blocks.append(_block(table, current))
            current = [p]
        if current:
            blocks.append(_block(table, current))
    return blocks


def _block(table: RegisterTable, points: list[ProfilePoint]) -> ReadBlock:
    start = points[0].address
    end = max(p.address + p.width for p in points)
    return ReadBlock(table=table, address=start, count=end - start, points=tuple(points))
