"""Sparkplug B (Eclipse Sparkplug 3.0) for the gateway: the payload codec and the host logic.

Payloads are protobuf. The schema is small and fixed (Payload: timestamp=1, metrics=2, seq=3;
Metric: name=1, alias=2, timestamp=3, datatype=4, is_null=7, int_value=10, long_value=11,
float_value=12, double_value=13, boolean_value=14, string_value=15), so it is encoded and decoded
here on the protobuf wire format directly, which keeps generated code and protoc out of the
build. Unknown fields are skipped, as protobuf requires; a frame that breaks the wire format is
refused with the offset where it broke.

Host logic: births (NBIRTH/DBIRTH) declare each metric's name, alias and datatype; data messages
(NDATA/DDATA) may carry aliases only. Sequence numbers run 0..255 per edge node. A gap, an
unknown alias or data before any birth makes the host ask the edge node for a rebirth (NCMD
`Node Control/Rebirth`) and ignore its data until the birth arrives; deaths (NDEATH with the
matching bdSeq, DDEATH) turn the metrics they cover into comm_fail points.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

# Sparkplug B datatypes (the spec's DataType enum)
INT8, INT16, INT32, INT64, UINT8, UINT16, UINT32, UINT64, FLOAT, DOUBLE, BOOLEAN, STRING = range(1, 13)
DATETIME, TEXT = 13, 14
_INT_TYPES = {INT8: 8, INT16: 16, INT32: 32, INT64: 64}
_UINT_TYPES = {UINT8, UINT16, UINT32, UINT64, DATETIME}
NUMERIC_TYPES = set(_INT_TYPES) | _UINT_TYPES | {FLOAT, DOUBLE, BOOLEAN}
MAX_FRAME_BYTES = 256 * 1024
REBIRTH_METRIC = "Node Control/Rebirth"


class FrameError(ValueError):
    """A Sparkplug frame that is not a valid payload; the message says where and why."""


@dataclass
class Metric:
    name: str = ""
    alias: int | None = None
    timestamp: int | None = None  # ms since the epoch
    datatype: int = 0
    is_null: bool = False
    value: float | int | bool | str | None = None
    # the value fields as they came (field number → value), to read them again once the datatype
    # is known: a DATA metric may carry no datatype and take it from its birth (Sparkplug 3.0)
    raw: dict[int, int | bytes] = field(default_factory=dict, repr=False, compare=False)

    def resolve(self, datatype: int) -> None:
        """Read the value again as `datatype` (the one its birth declared)."""
        self.datatype = datatype
        self.value = _metric_value(self, self.raw)


@dataclass
class Payload:
    timestamp: int | None = None
    seq: int | None = None
    metrics: list[Metric] = field(default_factory=list)


# ---------------------------------------------------------------- protobuf wire format
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise FrameError(f"truncated varint at byte {pos}")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise FrameError(f"varint longer than 10 bytes at byte {pos}")


#: the wire type protobuf gives each field we read (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32)
_PAYLOAD_WIRE = {1: 0, 2: 2, 3: 0}
_METRIC_WIRE = {1: 2, 2: 0, 3: 0, 4: 0, 7: 0, 10: 0, 11: 0, 12: 5, 13: 1, 14: 0, 15: 2}


def _fields(buf: bytes, wire_of: dict[int, int]) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field; a field we read with the wrong wire type
    breaks the frame (protobuf refuses it too), an unknown one is skipped."""
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise FrameError(f"field number 0 at byte {pos}")
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            if pos + 8 > len(buf):
                raise FrameError(f"truncated 64-bit field {number} at byte {pos}")
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise FrameError(f"field {number} of {length} bytes runs past the end at byte {pos}")
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            if pos + 4 > len(buf):
                raise FrameError(f"truncated 32-bit field {number} at byte {pos}")
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise FrameError(f"wire type {wire} (groups or invalid) at byte {pos}")
        expected = wire_of.get(number)
        if expected is not None and wire != expected:
            raise FrameError(f"field {number} has wire type {wire} where {expected} is due, at byte {start}")
        yield number, wire, value


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


def _int(value: int | bytes) -> int:
    if not isinstance(value, int):  # _fields checked the wire type: this cannot happen
        raise FrameError("a length-delimited field where a number is due")
    return value


def _bytes(value: int | bytes) -> bytes:
    if isinstance(value, int):
        raise FrameError("a number where a length-delimited field is due")
    return value


def _decode_metric(buf: bytes) -> Metric:
    m = Metric()
    raw: dict[int, int | bytes] = {}
    for number, _wire, value in _fields(buf, _METRIC_WIRE):
        if number == 1:
            try:
                m.name = _bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                raise FrameError("metric name is not UTF-8") from None
        elif number == 2:
            m.alias = _int(value)
        elif number == 3:
            m.timestamp = _int(value)
        elif number == 4:
            m.datatype = _int(value)
        elif number == 7:
            m.is_null = bool(value)
        elif 10 <= number <= 15:
            raw[number] = value
    m.raw = raw
    m.value = _metric_value(m, raw)
    return m


def _metric_value(m: Metric, raw: dict[int, int | bytes]) -> float | int | bool | str | None:
    if m.is_null:
        return None
    dt = m.datatype
    if dt in (INT8, INT16, INT32, UINT8, UINT16, UINT32) and 10 in raw:
        v = _int(raw[10])
        return _signed(v, _INT_TYPES[dt]) if dt in _INT_TYPES else v & 0xFFFFFFFF
    if dt in (INT64, UINT64, DATETIME) and 11 in raw:
        v = _int(raw[11])
        return _signed(v, 64) if dt == INT64 else v
    if dt == FLOAT and 12 in raw:
        return float(struct.unpack("<f", _bytes(raw[12]))[0])
    if dt == DOUBLE and 13 in raw:
        return float(struct.unpack("<d", _bytes(raw[13]))[0])
    if dt == BOOLEAN and 14 in raw:
        return bool(raw[14])
    if dt in (STRING, TEXT) and 15 in raw:
        try:
            return _bytes(raw[15]).decode("utf-8")
        except UnicodeDecodeError:
            raise FrameError(f"metric {m.name or m.alias}: string value is not UTF-8") from None
    return None  # no value for its datatype (datasets, templates, ...): carried, not read


def decode_payload(frame: bytes) -> Payload:
    """A Sparkplug B payload from its protobuf bytes, or FrameError saying where it broke."""
    if len(frame) > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {len(frame)} bytes exceeds {MAX_FRAME_BYTES}")
    p = Payload()
    for number, _wire, value in _fields(bytes(frame), _PAYLOAD_WIRE):
        if number == 1:
            p.timestamp = _int(value)
        elif number == 2:
            p.metrics.append(_decode_metric(_bytes(value)))
        elif number == 3:
            p.seq = _int(value)
    return p


def _put_varint(out: bytearray, value: int) -> None:
    value &= (1 << 64) - 1
    while True:
        b = value & 0x7F
        value >>= 7
        out.append(b | 0x80 if value else b)
        if not value:
            return


def _put_key(out: bytearray, number: int, wire: int) -> None:
    _put_varint(out, number << 3 | wire)


def _put_bytes(out: bytearray, number: int, data: bytes) -> None:
    _put_key(out, number, 2)
    _put_varint(out, len(data))
    out += data


def encode_metric(m: Metric) -> bytes:
    out = bytearray()
    if m.name:
        _put_bytes(out, 1, m.name.encode())
    if m.alias is not None:
        _put_key(out, 2, 0)
        _put_varint(out, m.alias)
    if m.timestamp is not None:
        _put_key(out, 3, 0)
        _put_varint(out, m.timestamp)
    _put_key(out, 4, 0)
    _put_varint(out, m.datatype)
    if m.value is None:
        _put_key(out, 7, 0)
        _put_varint(out, 1)
        return bytes(out)
    dt, v = m.datatype, m.value
    if dt in (INT8, INT16, INT32, UINT8, UINT16, UINT32):
        _put_key(out, 10, 0)
        _put_varint(out, int(v) & 0xFFFFFFFF)
    elif dt in (INT64, UINT64, DATETIME):
        _put_key(out, 11, 0)
        _put_varint(out, int(v))
    elif dt == FLOAT:
        _put_key(out, 12, 5)
        out += struct.pack("<f", float(v))
    elif dt == DOUBLE:
        _put_key(out, 13, 1)
        out += struct.pack("<d", float(v))
    elif dt == BOOLEAN:
        _put_key(out, 14, 0)
        _put_varint(out, int(bool(v)))
    elif dt in (STRING, TEXT):
        _put_bytes(out, 15, str(v).encode())
    return bytes(out)


def encode_payload(p: Payload) -> bytes:
    out = bytearray()
    if p.timestamp is not None:
        _put_key(out, 1, 0)
        _put_varint(out, p.timestamp)
    for m in p.metrics:
        _put_bytes(out, 2, encode_metric(m))
    if p.seq is not None:
        _put_key(out, 3, 0)
        _put_varint(out, p.seq)
    return bytes(out)


def numeric(m: Metric) -> float | None:
    """The metric as a finite float, or None when it is not one (text, NaN, ±inf, too large)."""
    v = m.value
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        try:
            f = float(v)
        except OverflowError:
            return None
        return f if math.isfinite(f) else None
    return None
