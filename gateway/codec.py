"""Turn Modbus registers into engineering values and back, as a device profile describes them."""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator

from gateway.blocks import ReadBlock
from gridverse.config import DataType, DeviceProfile, ProfilePoint

_STRUCT = {
    DataType.U16: "H",
    DataType.I16: "h",
    DataType.U32: "I",
    DataType.I32: "i",
    DataType.F32: "f",
    DataType.F64: "d",
    DataType.U64: "Q",
    DataType.I64: "q",
}

#: SunSpec's "not implemented" values (SunSpec Information Model Specification): a register that
#: holds one is not a reading, whatever its scale.
_SUNSPEC_NOT_IMPLEMENTED = {
    DataType.U16: 0xFFFF,
    DataType.I16: -0x8000,
    DataType.U32: 0xFFFFFFFF,
    DataType.I32: -0x80000000,
    DataType.U64: 0xFFFFFFFFFFFFFFFF,
    DataType.I64: -0x8000000000000000,
}


class DecodeError(ValueError):
    """A register image that cannot be a valid reading (wrong length, NaN, out of range)."""


class EncodeError(DecodeError):
    """An SI value the point's registers cannot hold exactly (not finite, out of range, between
    two steps of its scale), or a scale factor the read path would refuse."""


#: Scale factors the read path accepts (SunSpec: -10 … +10); a write uses the same range.
SCALE_FACTOR_RANGE = (-10, 10)


def _order_words(words: list[int], profile: DeviceProfile) -> list[int]:
    if profile.byte_order == "little":
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    if profile.word_order == "little":
        words = list(reversed(words))
    return words


def decode(point: ProfilePoint, words: list[int], profile: DeviceProfile, scale_factor: int | None = None) -> float:
    """Registers (most significant word first after ordering) → value in SI units: the raw number
    times `scale` plus `offset`, times 10^scale_factor (SunSpec), converted from the profile's unit."""
    return to_si(point, decode_raw(point, words, profile), profile, scale_factor)


def to_si(point: ProfilePoint, raw: float | int, profile: DeviceProfile, scale_factor: int | None = None) -> float:
    """A raw register number → value in SI units (see `decode`)."""
    value = raw * point.scale + point.offset
    if scale_factor is not None:
        if not SCALE_FACTOR_RANGE[0] <= scale_factor <= SCALE_FACTOR_RANGE[1]:
            raise DecodeError(f"{profile.name}/{point.name}: scale factor {scale_factor} is not a SunSpec scale factor")
        value *= 10.0**scale_factor
    return value * point.si_factor


def decode_text(point: ProfilePoint, words: list[int], profile: DeviceProfile) -> str:
    """A string point: two ASCII characters per register, NUL-padded."""
    _check_words(point, words, profile)
    raw = b"".join(w.to_bytes(2, "big") for w in words).rstrip(b"\x00 ")
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise DecodeError(f"{profile.name}/{point.name}: {raw[:20]!r} is not ASCII text") from None


def _check_words(point: ProfilePoint, words: list[int], profile: DeviceProfile) -> None:
    if len(words) != point.width:
        raise DecodeError(f"{profile.name}/{point.name}: expected {point.width} registers, got {len(words)}")
    bad = [w for w in words if not 0 <= w <= 0xFFFF]
    if bad:  # a garbled frame: a register holds 16 bits, never more, never negative
        raise DecodeError(f"{profile.name}/{point.name}: register words {bad[:3]} are not 16-bit values")


def decode_raw(point: ProfilePoint, words: list[int], profile: DeviceProfile) -> float | int:
    """The register image as the number it encodes, before any scaling."""
    if point.type in (DataType.BIT, DataType.STRING):
        raise DecodeError(f"{profile.name}/{point.name}: {point.type.value} points are not numbers")
    _check_words(point, words, profile)
    raw_bytes = b"".join(w.to_bytes(2, "big") for w in _order_words(list(words), profile))
    (raw,) = struct.unpack(">" + _STRUCT[point.type], raw_bytes)
    return _checked(point, raw, profile)


def _checked(point: ProfilePoint, raw: float | int, profile: DeviceProfile) -> float | int:
    if isinstance(raw, float) and not math.isfinite(raw):
        raise DecodeError(f"{profile.name}/{point.name}: register value is {raw}, not a reading")
    if profile.sunspec_sentinels and raw == _SUNSPEC_NOT_IMPLEMENTED.get(point.type):
        raise DecodeError(f"{profile.name}/{point.name}: register holds SunSpec's 'not implemented' value")
    return raw


Raw = float | int | bool | str


class BlockUnpacker:
    """Unpacks every point of one block read at once: the block's registers become one byte image
    (which also proves each word is 16-bit) and each numeric point is read from it with a
    precompiled struct, without per-point word lists. Devices with little-endian word or byte
    order, and a block holding a word that is not 16-bit, take the per-point path, whose errors
    name the point."""

    def __init__(self, block: ReadBlock, profile: DeviceProfile) -> None:
        self.block, self.profile = block, profile
        self._image = struct.Struct(f">{block.count}H")
        self._direct = profile.word_order == "big" and profile.byte_order == "big"
        self._slots = [
            (p, p.address - block.address, struct.Struct(">" + _STRUCT[p.type]) if p.type in _STRUCT else None)
            for p in block.points
        ]

    def unpack(self, data: list[int] | list[bool]) -> Iterator[tuple[ProfilePoint, Raw | DecodeError]]:
        """(point, raw number, bit or text) for each point, or (point, DecodeError) for a point
        whose registers cannot be a reading."""
        image = None
        if self._direct and len(data) == self.block.count:
            try:
                image = self._image.pack(*data)
            except struct.error:  # a word outside 16 bits: found and named per point below
                image = None
        profile = self.profile
        for p, offset, unpacker in self._slots:
            try:
                if p.type == DataType.BIT:
                    yield p, bool(data[offset])
                elif p.type == DataType.STRING:
                    yield p, decode_text(p, [int(w) for w in data[offset : offset + p.width]], profile)
                elif image is not None and unpacker is not None:
                    yield p, _checked(p, unpacker.unpack_from(image, 2 * offset)[0], profile)
                else:
                    yield p, decode_raw(p, [int(w) for w in data[offset : offset + p.width]], profile)
            except DecodeError as exc:
                yield p, exc


def encode(point: ProfilePoint, value: float, profile: DeviceProfile, scale_factor: int | None = None) -> list[int]:
    """SI value → registers (the inverse of decode); the simulator uses it to serve what a real
    device would."""
    value = value / point.si_factor / (10.0**scale_factor if scale_factor is not None else 1.0)
    raw = (value - point.offset) / point.scale
    code = _STRUCT[point.type]
    if code in "HhIiQq":
        raw_int = round(raw)
        bits = 16 * point.width
        lo, hi = (0, 2**bits - 1) if code in "HIQ" else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
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


def _num(x: float) -> str:
    return f"{x:.12g}"


def _int_range(point: ProfilePoint) -> tuple[int, int]:
    bits = 16 * point.width
    return (0, 2**bits - 1) if _STRUCT[point.type] in "HIQ" else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


def encode_exact(
    point: ProfilePoint, value: float, profile: DeviceProfile, scale_factor: int | None = None
) -> list[int]:
    """SI value → registers for a write, refusing (EncodeError) anything the registers cannot hold
    exactly: a value that is not finite, outside the type's range, or between two steps of the
    point's scale and scale factor (the message names the nearest values that can be written),
    and a scale factor the read path would refuse. Never rounds silently: a setpoint of 60 % at
    scale factor +2 is refused, not written as 100 %."""
    where = f"{profile.name}/{point.name}"
    unit = point.si_unit
    u = f" {unit}" if unit else ""
    if point.type in (DataType.BIT, DataType.STRING):
        raise EncodeError(f"{where}: {point.type.value} points are not written as numbers")
    if not math.isfinite(value):
        raise EncodeError(f"{where}: {value} is not a value a register can hold; give a finite number")
    lo_sf, hi_sf = SCALE_FACTOR_RANGE
    if scale_factor is not None and not lo_sf <= scale_factor <= hi_sf:
        raise EncodeError(
            f"{where}: scale factor {scale_factor} is outside {lo_sf} … {hi_sf}, which the read path accepts; "
            f"nothing is written (check the device's scale-factor register {point.scale_register})"
        )
    how = f"scale factor {scale_factor:+d}" if scale_factor is not None else f"scale {_num(point.scale)}"
    if scale_factor is not None and point.scale != 1:
        how = f"scale {_num(point.scale)} and {how}"
    if point.offset:
        how += f", offset {_num(point.offset)}"
    multiplier = point.si_factor * (10.0**scale_factor if scale_factor is not None else 1.0)
    raw = (value / multiplier - point.offset) / point.scale
    code = _STRUCT[point.type]
    if code in "fd":
        outside = f"{where}: {_num(value)}{u} is outside what {point.type.value} at {how} can hold"
        try:
            packed = struct.pack(">" + code, raw)
        except OverflowError:
            raise EncodeError(outside) from None
        if not math.isfinite(raw):
            raise EncodeError(outside)
        back = to_si(point, struct.unpack(">" + code, packed)[0], profile, scale_factor)
        if not math.isclose(back, value, rel_tol=1e-6 if code == "f" else 1e-12):
            raise EncodeError(
                f"{where}: {_num(value)}{u} cannot be held by {point.type.value} at {how}: nearest {_num(back)}{u}"
            )
    else:
        lo, hi = _int_range(point)
        step = abs(point.scale * multiplier)
        if not lo - 0.5 < raw < hi + 0.5:
            ends = sorted((to_si(point, lo, profile, scale_factor), to_si(point, hi, profile, scale_factor)))
            raise EncodeError(
                f"{where}: {_num(value)}{u} is outside what {point.type.value} at {how} can hold "
                f"({_num(ends[0])} … {_num(ends[1])}{u})"
            )
        nearest = round(raw)
        if (
            not math.isclose(to_si(point, nearest, profile, scale_factor), value, rel_tol=1e-9, abs_tol=step * 1e-6)
            or not lo <= nearest <= hi
        ):
            below, above = max(lo, math.floor(raw)), min(hi, math.ceil(raw))
            near = sorted({to_si(point, below, profile, scale_factor), to_si(point, above, profile, scale_factor)})
            raise EncodeError(
                f"{where}: {_num(value)}{u} cannot be written at {how} (steps of {_num(step)}{u}): "
                f"nearest {' or '.join(_num(n) + u for n in near)}"
            )
        packed = struct.pack(">" + code, nearest)
    words = [int.from_bytes(packed[i : i + 2], "big") for i in range(0, len(packed), 2)]
    return _order_words(words, profile)
