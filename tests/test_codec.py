"""Register decoding: every type and word/byte order, and impossible values refused."""

from __future__ import annotations

import pytest

from gateway.blocks import plan_reads
from gateway.codec import DecodeError, decode, encode
from gridverse.config import DataType, DeviceProfile, ProfilePoint


def _profile(word: str = "big", byte: str = "big", **point: object) -> DeviceProfile:
    p = {"name": "MMXU1.TotW", "table": "holding", "address": 0, **point}
    return DeviceProfile(name="t", word_order=word, byte_order=byte, points=[p])


@pytest.mark.parametrize("word", ["big", "little"])
@pytest.mark.parametrize("byte", ["big", "little"])
@pytest.mark.parametrize(
    ("dtype", "value", "scale"),
    [
        ("u16", 50123.0, 1.0),
        ("i16", -1234.5, 0.5),
        ("u32", 3_000_000_000.0, 1.0),
        ("i32", -7_250_000.0, 1.0),
        ("f32", 20412.5, 1.0),
        ("f64", -1.0e-3, 1.0),
    ],
)
def test_round_trip(word: str, byte: str, dtype: str, value: float, scale: float) -> None:
    profile = _profile(word, byte, type=dtype, scale=scale)
    point = profile.points[0]
    assert decode(point, encode(point, value, profile), profile) == pytest.approx(value)


def test_word_order_is_applied() -> None:
    big, little = _profile("big", type="u32"), _profile("little", type="u32")
    assert encode(big.points[0], 0x00010002, big) == [0x0001, 0x0002]
    assert encode(little.points[0], 0x00010002, little) == [0x0002, 0x0001]
    assert decode(little.points[0], [0x0002, 0x0001], little) == 0x00010002


def test_nan_float_is_not_a_reading() -> None:
    profile = _profile(type="f32")
    with pytest.raises(DecodeError, match="not a reading"):
        decode(profile.points[0], [0x7FC0, 0x0000], profile)


def test_wrong_register_count_is_refused() -> None:
    profile = _profile(type="i32")
    with pytest.raises(DecodeError, match="expected 2 registers, got 1"):
        decode(profile.points[0], [1], profile)


def test_value_outside_the_type_is_refused() -> None:
    profile = _profile(type="u16")
    with pytest.raises(DecodeError, match="does not fit u16"):
        encode(profile.points[0], 70000.0, profile)


def test_scale_zero_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="believable zero"):
        ProfilePoint(name="MMXU1.A", table="input", address=0, type=DataType.U16, scale=0)


def test_adjacent_points_merge_into_blocks_within_limits() -> None:
    points = [
        {"name": f"GGIO1.AnIn{i}", "table": "input", "address": a, "type": "u16"}
        for i, a in enumerate([0, 1, 2, 20, 21, 200])
    ]
    points.append({"name": "GGIO1.Big", "table": "input", "address": 300, "type": "u16"})
    points.append({"name": "GGIO1.Far", "table": "input", "address": 300 + 130, "type": "u16"})
    profile = DeviceProfile(name="t", points=points)
    blocks = [(b.address, b.count) for b in plan_reads(profile, max_gap=8)]
    assert blocks == [(0, 3), (20, 2), (200, 1), (300, 1), (430, 1)]
    merged = [(b.address, b.count) for b in plan_reads(profile, max_gap=20)]
    assert merged[0] == (0, 22)
    wide = plan_reads(profile, max_gap=200)
    assert all(b.count <= 125 for b in wide)
    assert sorted(p.name for b in wide for p in b.points) == sorted(p.name for p in profile.points)


from hypothesis import given  # noqa: E402
from hypothesis import settings as hsettings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@hsettings(max_examples=400, deadline=None)
@given(
    dtype=st.sampled_from(["u16", "i16", "u32", "i32", "f32", "f64"]),
    word=st.sampled_from(["big", "little"]),
    byte=st.sampled_from(["big", "little"]),
    words=st.lists(st.integers(min_value=-5, max_value=70_000), max_size=6),
)
def test_any_modbus_reply_gives_a_finite_reading_or_a_reason(
    dtype: str, word: str, byte: str, words: list[int]
) -> None:
    """Garbage registers (wrong count, out-of-range words, NaN/inf patterns) never become a
    believable value: the result is finite, or DecodeError says what was wrong."""
    import math

    profile = _profile(word, byte, type=dtype)
    try:
        value = decode(profile.points[0], words, profile)
    except DecodeError as exc:
        assert str(exc)
        return
    assert math.isfinite(value)
    assert all(0 <= w <= 0xFFFF for w in words)  # a decoded reply had only real 16-bit registers


_BLOCK_TYPES = ["u16", "i16", "u32", "i32", "f32", "f64", "u64", "i64", "string"]


def _block_profile(word: str, byte: str, sunspec: bool) -> DeviceProfile:
    points, address = [], 0
    for k, dtype in enumerate(_BLOCK_TYPES):
        p = {
            "name": f"GGIO1.AnIn{k}",
            "table": "holding",
            "address": address,
            "type": dtype,
            **({"length": 3} if dtype == "string" else {}),
        }
        points.append(p)
        address += {"u16": 1, "i16": 1, "u32": 2, "i32": 2, "f32": 2, "f64": 4, "u64": 4, "i64": 4, "string": 3}[dtype]
    return DeviceProfile(name="blk", word_order=word, byte_order=byte, sunspec_sentinels=sunspec, points=points)


@hsettings(max_examples=300, deadline=None)
@given(
    word=st.sampled_from(["big", "little"]),
    byte=st.sampled_from(["big", "little"]),
    sunspec=st.booleans(),
    words=st.lists(
        st.one_of(
            st.integers(0, 0xFFFF), st.sampled_from([0xFFFF, 0x7FC0, 0x7F80, 0x8000, 0]), st.integers(-3, 70_000)
        ),
        min_size=23,
        max_size=23,
    ),
)
def test_block_unpacker_reads_what_point_by_point_decoding_reads(
    word: str, byte: str, sunspec: bool, words: list[int]
) -> None:
    """The poller unpacks a whole block at once; for any reply, garbage included, each point gets
    the same number (or the same refusal) as decoding that point's own registers."""
    from gateway.codec import BlockUnpacker, decode_raw, decode_text

    profile = _block_profile(word, byte, sunspec)
    (block,) = plan_reads(profile, max_gap=0)
    assert block.count == len(words)
    for point, got in BlockUnpacker(block, profile).unpack(words):
        mine = words[point.address : point.address + point.width]
        try:
            expected: object = (decode_text if point.type == DataType.STRING else decode_raw)(point, mine, profile)
        except DecodeError as exc:
            assert isinstance(got, DecodeError) and str(got) == str(exc)
            continue
        assert not isinstance(got, DecodeError), got
        assert got == expected, point.name


@pytest.mark.parametrize(
    ("unit", "raw", "si_unit", "si_value"),
    [
        ("VAr", 12.0, "var", 12.0),
        ("kVAr", 1.5, "var", 1500.0),
        ("kvarh", 2.0, "var.s", 7.2e6),
        ("varh", 1.0, "var.s", 3600.0),
        ("Mvarh", 1.0, "var.s", 3.6e9),
        ("VAh", 1.0, "VA.s", 3600.0),
        ("kVAh", 1.0, "VA.s", 3.6e6),
        ("deg", 180.0, "rad", 3.141592653589793),
        ("%RH", 55.0, "%", 55.0),
    ],
)
def test_units_of_real_register_maps_convert_to_si(unit: str, raw: float, si_unit: str, si_value: float) -> None:
    profile = _profile(type="f32", unit=unit)
    point = profile.points[0]
    assert point.si_unit == si_unit
    assert decode(point, encode(point, si_value, profile), profile) == pytest.approx(si_value)
    from gateway.codec import to_si

    assert to_si(point, raw, profile) == pytest.approx(si_value)


def test_max_registers_and_max_bits_bound_every_block() -> None:
    points = [{"name": f"GGIO1.AnIn{i}", "table": "input", "address": 2 * i, "type": "u32"} for i in range(40)]
    points += [{"name": f"GGIO1.Ind{i}", "table": "coil", "address": i, "type": "bit"} for i in range(40)]
    profile = DeviceProfile(name="t", max_registers=16, max_bits=32, points=points)
    blocks = plan_reads(profile, max_gap=8)
    registers = [b for b in blocks if b.table.value == "input"]
    assert [b.count for b in registers] == [16, 16, 16, 16, 16]  # 80 registers, no u32 split across reads
    assert [b.count for b in blocks if b.table.value == "coil"] == [32, 8]
    assert sum(len(b.points) for b in blocks) == 80


@pytest.mark.parametrize(
    ("point", "message"),
    [
        ({"address": 65535, "type": "f64"}, "TotW: a f64 at holding register 65535 would need registers up to 65538"),
        ({"address": 65530, "type": "string", "length": 8}, "would need registers up to 65537"),
        ({"address": 0, "type": "string", "length": 20}, "20 registers do not fit one read of at most 16"),
    ],
)
def test_registers_past_the_address_space_or_the_read_limit_are_refused(point: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DeviceProfile(name="t", max_registers=16, points=[{"name": "MMXU1.TotW", "table": "holding", **point}])
    assert DeviceProfile(name="t", points=[{"name": "MMXU1.TotW", "table": "holding", "address": 65532, "type": "f64"}])
