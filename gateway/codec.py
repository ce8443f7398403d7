"""Turn Modbus registers into engineering values and back, as a device profile describes them."""

from __future__ import annotations

import math
import struct

from gridverse.config import DataType, DeviceProfile, ProfilePoint

_STRUCT = {
    DataType.U16: "H",
    DataType.I16: "h",
    DataType.U32: "I",
    DataType.I32: "i",
    DataType.F32: "f",
    DataType.F64: "d",
}


class DecodeError(ValueError):
    """A register image that cannot be a valid reading (wrong length, NaN, out of range)."""


def _order_words(words: list[int], profile: DeviceProfile) -> list[int]:
    if profile.byte_order == "little":
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    if profile.word_order == "little":
        words = list(reversed(words))
    return words


def decode(point: ProfilePoint, words: list[int], profile: DeviceProfile) -> float:
    """Registers (most significant word first after ordering) → scaled value in the point's unit."""
    if point.type == DataType.BIT:
        raise DecodeError(f"{profile.name}/{point.name}: bits are decoded by decode_bit")
    if len(words) != point.width:
        raise DecodeError(
            f"{profile.name}/{point.name}: expected {point.width} registers, got {len(words)}"
        )
    bad = [w for w in words if not 0 <= w <= 0xFFFF]
    if bad:  # a garbled frame: a register holds 16 bits, never more, never negative
        raise DecodeError(f"{profile.name}/{point.name}: register words {bad[:3]} are not 16-bit values")
    raw_bytes = b"".join(w.to_bytes(2, "big") for w in _order_words(list(words), profile))
    (raw,) = struct.unpack(">" + _STRUCT[point.type], raw_bytes)
    if isinstance(raw, float) and not math.isfinite(raw):
        raise DecodeError(f"{profile.name}/{point.name}: register value is {raw}, not a reading")
    return raw * point.scale + point.offset


def encode(point: ProfilePoint, value: float, profile: DeviceProfile) -> list[int]:
    """Scaled value → registers; the simulator uses it to serve what a real device would."""
    raw = (value - point.offset) / point.scale
    code = _STRUCT[point.type]
    if code in "HhIi":
        raw_int = round(raw)
        bits = 16 * point.width
        lo, hi = (0, 2**bits - 1) if code in "HI" else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        if not lo <= raw_int <= hi:
            raise DecodeError(
                f"{profile.name}/{point.name}: {value} {point.unit} does not fit {point.type.value}"
                f" with scale {point.scale}"
            )
        packed = struct.pack(">" + code, raw_int)
    else:
        packed = struct.pack(">" + code, raw)
    words = [int.from_bytes(packed[i : i + 2], "big") for i in range(0, len(packed), 2)]
    return _order_words(words, profile)  # the ordering is its own inverse
