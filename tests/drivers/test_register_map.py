"""Register maps as data: loading/validation errors, the register codec and read planning."""

from __future__ import annotations

import contextlib
import math
import re
import struct
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from medtwin.drivers.errors import ConfigurationError, LimitError, ProtocolError
from medtwin.drivers.register_map import (
    MAX_READ_BITS,
    MAX_READ_REGISTERS,
    ReadBlock,
    RegisterMap,
    load_register_map,
    shipped_register_maps,
)
from pymodbus.client import AsyncModbusTcpClient

REPO = Path(__file__).resolve().parents[2]
CONVERT = AsyncModbusTcpClient  # pymodbus's converters are classmethods of every client
DT = CONVERT.DATATYPE


def _map(registers: dict[str, dict[str, Any]], **info: Any) -> RegisterMap:
    return RegisterMap.from_dict(
        {"map": {"name": "test", **info}, "registers": registers}, source="test.toml"
    )


def _one(kind: str, order: str = "ABCD", **extra: Any) -> RegisterMap:
    spec: dict[str, Any] = {"table": "holding", "address": 0, "type": kind, **extra}
    if kind in ("uint32", "int32", "float32"):
        spec["word_order"] = order
    return _map({"x": spec})


# --------------------------------------------------------------------------- golden values


@pytest.mark.parametrize(
    ("kind", "order", "value", "registers"),
    [
        ("float32", "ABCD", 72.5, (0x4291, 0x0000)),
        ("float32", "CDAB", 72.5, (0x0000, 0x4291)),
        ("float32", "ABCD", 1.0, (0x3F80, 0x0000)),
        ("float32", "ABCD", -2.0, (0xC000, 0x0000)),
        ("uint16", "ABCD", 0xBEEF, (0xBEEF,)),
        ("int16", "ABCD", -1, (0xFFFF,)),
        ("int16", "ABCD", -32768, (0x8000,)),
        ("uint32", "ABCD", 0x12345678, (0x1234, 0x5678)),
        ("uint32", "CDAB", 0x12345678, (0x5678, 0x1234)),
        ("int32", "ABCD", -2, (0xFFFF, 0xFFFE)),
        ("int32", "CDAB", -2, (0xFFFE, 0xFFFF)),
    ],
)
def test_golden_register_encodings(
    kind: str, order: str, value: float, registers: tuple[int, ...]
) -> None:
    register_map = _one(kind, order)
    assert register_map.encode("x", value) == registers
    assert register_map.decode("x", list(registers)) == value


def test_shipped_pump_map_golden_rate() -> None:
    pump = load_register_map("infusion_pump")
    assert pump.encode("rate_setpoint_ml_h", 72.5) == (0x4291, 0x0000)
    assert pump.encode("command", 1) == (1,)
    assert pump.encode("syringe_diameter_mm", 26.7) == tuple(
        CONVERT.convert_to_registers(26.7, DT.FLOAT32)
    )


def test_scaled_integer_rounds_to_the_nearest_step() -> None:
    register_map = _one("uint16", scale=0.1, max=100.0)
    assert register_map.encode("x", 12.34) == (123,)
    assert register_map.encode("x", 12.36) == (124,)
    assert register_map.decode("x", [123]) == pytest.approx(12.3)
    assert isinstance(register_map.decode("x", [123]), float)


def test_unscaled_integer_decodes_to_int_and_bits_to_bool() -> None:
    register_map = _map(
        {
            "n": {"table": "holding", "address": 0, "type": "int16"},
            "valve": {"table": "coil", "address": 3},
        }
    )
    value = register_map.decode("n", [0xFFFE])
    assert value == -2
    assert type(value) is int
    assert register_map.encode("valve", True) is True
    assert register_map.decode("valve", [1]) is True


# --------------------------------------------------------------------------- round trips


@given(
    st.floats(width=32, allow_nan=False, allow_infinity=False), st.sampled_from(["ABCD", "CDAB"])
)
def test_float32_round_trip_matches_pymodbus(value: float, order: str) -> None:
    register_map = _one("float32", order)
    entry = register_map["x"]
    registers = entry.to_registers(value)
    expected = CONVERT.convert_to_registers(
        value, DT.FLOAT32, word_order="big" if order == "ABCD" else "little"
    )
    assert list(registers) == expected
    assert entry.from_registers(registers) == value
    assert CONVERT.convert_from_registers(
        list(registers), DT.FLOAT32, word_order="big" if order == "ABCD" else "little"
    ) == pytest.approx(value, nan_ok=False, rel=0, abs=0)


@given(
    st.data(),
    st.sampled_from(["uint16", "int16", "uint32", "int32"]),
    st.sampled_from(["ABCD", "CDAB"]),
)
def test_integer_round_trip_matches_pymodbus(data: st.DataObject, kind: str, order: str) -> None:
    bits = 16 if kind.endswith("16") else 32
    low, high = (
        (0, 2**bits - 1) if kind.startswith("u") else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    )
    value = data.draw(st.integers(low, high))
    entry = _one(kind, order)["x"]
    registers = entry.to_registers(value)
    word_order: Literal["big", "little"] = "big" if order == "ABCD" else "little"
    assert list(registers) == CONVERT.convert_to_registers(
        value, getattr(DT, kind.upper()), word_order=word_order
    )
    assert entry.from_registers(registers) == value


@given(
    st.lists(st.integers(0, 0xFFFF), min_size=2, max_size=2),
    st.sampled_from(["uint32", "int32", "float32"]),
    st.sampled_from(["ABCD", "CDAB"]),
)
def test_any_registers_decode_and_re_encode_to_the_same_words(
    words: list[int], kind: str, order: str
) -> None:
    entry = _one(kind, order)["x"]
    value = entry.from_registers(words)
    assume(not (isinstance(value, float) and math.isnan(value)))  # NaN payloads are not values
    assert list(entry.to_registers(value)) == words


@settings(max_examples=300)
@given(st.lists(st.one_of(st.integers(-(2**40), 2**40), st.booleans()), max_size=20))
def test_random_registers_never_raise_anything_but_protocol_error(data: list[int]) -> None:
    pump = load_register_map("infusion_pump")
    for block in pump.plan_reads([n for n, e in pump.entries.items() if e.readable]):
        values: dict[str, Any] | None = None
        with contextlib.suppress(ProtocolError):
            values = block.decode(data)
        if values is not None:
            assert set(values) == {e.name for e in block.entries}
    for name in ("state", "delivered_rate_ml_h"):
        with contextlib.suppress(ProtocolError):
            pump.decode(name, data)


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("rate_setpoint_ml_h", 1500.01, "outside the declared limits"),
        ("rate_setpoint_ml_h", -0.1, "outside the declared limits"),
        ("rate_setpoint_ml_h", math.nan, "outside the declared limits"),
        ("rate_setpoint_ml_h", math.inf, "outside the declared limits"),
        ("rate_setpoint_ml_h", True, "takes a number"),
        ("rate_setpoint_ml_h", "10", "takes a number"),
        ("command", 5, "is not one of 1 (start)"),
        ("command", 1.5, "is not one of"),
        ("state", 1, "read-only"),
        ("uptime_s", 3, "read-only"),
        ("syringe_diameter_mm", 0.05, "outside the declared limits"),
        ("rate_setpoint_ml_h", 10**400, "outside the declared limits"),
    ],
)
def test_encode_refuses_with_limit_error_before_sending(name: str, value: Any, words: str) -> None:
    pump = load_register_map("infusion_pump")
    with pytest.raises(LimitError, match=re.escape(words)) as info:
        pump.encode(name, value, device="pump-1")
    assert "nothing was sent" in str(info.value)
    assert info.value.device == "pump-1"


@settings(max_examples=300)
@given(st.one_of(st.floats(), st.integers(), st.booleans(), st.text(max_size=3), st.none()))
def test_encode_accepts_or_refuses_with_limit_error_only(value: Any) -> None:
    for register_map in (load_register_map("infusion_pump"), load_register_map("bench_io")):
        for name, entry in register_map.entries.items():
            try:
                encoded = register_map.encode(name, value)
            except LimitError:
                continue
            assert entry.writable
            if entry.is_bit:
                assert encoded is bool(value)
            else:
                assert isinstance(encoded, tuple)
                assert all(0 <= word <= 0xFFFF for word in encoded)
                expected = (
                    struct.unpack(">f", struct.pack(">f", value))[0]
                    if entry.type == "float32"
                    else value
                )
                assert register_map.decode(name, list(encoded)) == expected


def test_encode_refuses_non_integer_for_unscaled_integer_and_bad_bits() -> None:
    register_map = _map(
        {
            "n": {"table": "holding", "address": 0, "type": "uint16"},
            "valve": {"table": "coil", "address": 0},
        }
    )
    with pytest.raises(LimitError, match="integer"):
        register_map.encode("n", 2.5)
    with pytest.raises(LimitError, match="True/False"):
        register_map.encode("valve", 2)


def test_unknown_name_is_a_configuration_error_naming_the_map() -> None:
    pump = load_register_map("infusion_pump")
    with pytest.raises(ConfigurationError, match="has no entry 'rate'"):
        pump.encode("rate", 1.0)
    with pytest.raises(ConfigurationError, match="has no entry 'nope'"):
        pump.plan_reads(["nope"])


# --------------------------------------------------------------------------- loading errors


BASE: dict[str, Any] = {"table": "holding", "address": 0, "type": "uint16"}


@pytest.mark.parametrize(
    ("registers", "field", "words"),
    [
        ({"x": {**BASE, "table": "memory"}}, "registers.x.table", "'coil', 'discrete'"),
        ({"x": {**BASE, "adress": 3}}, "registers.x.adress", "Extra inputs"),
        ({"x": {"table": "holding", "address": 0}}, "registers.x.type", "needs a type"),
        ({"x": {**BASE, "type": "bool"}}, "registers.x.type", "'bool' is for coils"),
        (
            {"x": {"table": "coil", "address": 0, "type": "uint16"}},
            "registers.x.type",
            "expected type 'bool'",
        ),
        ({"x": {"table": "coil", "address": 0, "scale": 2}}, "registers.x.scale", "does not apply"),
        ({"x": {**BASE, "word_order": "CDAB"}}, "registers.x.word_order", "32-bit types only"),
        (
            {"x": {**BASE, "type": "float32", "word_order": "DCBA"}},
            "registers.x.word_order",
            "'ABCD' or 'CDAB'",
        ),
        ({"x": {**BASE, "type": "float32", "scale": 2}}, "registers.x.scale", "integer types"),
        ({"x": {**BASE, "scale": 0}}, "registers.x.scale", "finite number > 0"),
        ({"x": {**BASE, "min": 10, "max": 5}}, "registers.x.min", "greater than max"),
        ({"x": {**BASE, "max": 70000}}, "registers.x.max", "not representable as uint16"),
        ({"x": {**BASE, "type": "int16", "min": -40000}}, "registers.x.min", "not representable"),
        (
            {"x": {**BASE, "table": "input", "access": "rw"}},
            "registers.x.access",
            "read-only table",
        ),
        ({"x": {**BASE, "access": "x"}}, "registers.x.access", "'r', 'w' or 'rw'"),
        ({"x": {**BASE, "address": -1}}, "registers.x.address", "greater than or equal to 0"),
        (
            {"x": {**BASE, "address": 65535, "type": "uint32"}},
            "registers.x.address",
            "runs past address 65535",
        ),
        ({"Rate": BASE}, "registers.Rate", "lower-case identifiers"),
        ({"x": {**BASE, "values": {"0": "a", "1": "a"}}}, "registers.x.values.1", "used twice"),
        ({"x": {**BASE, "values": {"70000": "big"}}}, "registers.x.values.70000", "does not fit"),
        ({"x": {**BASE, "type": "int16", "bits": {"0": "a"}}}, "registers.x.bits", "unsigned type"),
        ({"x": {**BASE, "bits": {"16": "a"}}}, "registers.x.bits.16", "run 0..15"),
        (
            {"x": {**BASE, "scale": 0.5, "values": {"0": "a"}}},
            "registers.x.values",
            "unscaled integer",
        ),
        (
            {"a": {**BASE, "type": "float32"}, "b": {**BASE, "address": 1}},
            "registers.b.address",
            "overlaps 'a'",
        ),
        ({}, "registers", "at least 1 item"),
    ],
)
def test_map_errors_name_file_field_and_expectation(
    registers: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        _map(registers)
    assert info.value.field == field
    assert info.value.source == "test.toml"
    assert str(info.value).startswith(f"test.toml:{field}: ")
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("document", "field", "words"),
    [
        ({"registers": {"x": BASE}}, "map", "Field required"),
        (
            {"map": {"name": "m", "device_id": 300}, "registers": {"x": BASE}},
            "map.device_id",
            "less than or equal to 255",
        ),
        (
            {"map": {"name": "m", "max_read_registers": 126}, "registers": {"x": BASE}},
            "map.max_read_registers",
            "less than or equal to 125",
        ),
        ({"map": {"name": "m"}, "registers": {"x": BASE}, "extra": 1}, "extra", "Extra inputs"),
    ],
)
def test_map_section_errors(document: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        RegisterMap.from_dict(document, source="dev.toml")
    assert info.value.field == field
    assert words in str(info.value)


def test_file_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[map\nname = 'x'\n")
    with pytest.raises(ConfigurationError, match="not valid TOML") as info:
        load_register_map(broken)
    assert info.value.source == str(broken.resolve())
    with pytest.raises(ConfigurationError, match="cannot read") as info:
        load_register_map(tmp_path / "missing.toml")
    with pytest.raises(ConfigurationError, match="no shipped register map called 'pumpp'"):
        load_register_map("pumpp")


def test_file_round_trip_and_cache_follows_edits(tmp_path: Path) -> None:
    path = tmp_path / "dev.toml"
    path.write_text(
        '[map]\nname = "dev"\n[registers.a]\ntable = "holding"\naddress = 0\n'
        'type = "uint16"\nmax = 10\n'
    )
    first = load_register_map(path)
    assert first["a"].maximum == 10
    assert load_register_map(str(path)) is first
    path.write_text(
        '[map]\nname = "dev"\n[registers.a]\ntable = "holding"\naddress = 0\n'
        'type = "uint16"\nmax = 20\n# edited\n'
    )
    assert load_register_map(path)["a"].maximum == 20


def test_shipped_maps_load() -> None:
    assert {"infusion_pump", "bench_io"} <= set(shipped_register_maps())
    pump = load_register_map("infusion_pump")
    assert pump.device_id == 1
    assert pump["rate_setpoint_ml_h"].word_order == "ABCD"
    assert pump["command"].access == "w"
    assert pump["alarm_bits"].flags(0b10001) == {"occlusion", "communication_timeout"}
    assert pump["state"].label(3) == "alarm"
    bench = load_register_map("bench_io")
    assert bench["pinch_valve"].table == "coil"
    assert bench["line_pressure_mmhg"].type == "float32"


def test_docs_tables_list_every_shipped_entry() -> None:
    text = (REPO / "docs" / "protocols" / "modbus.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("|")]
    for map_name in ("infusion_pump", "bench_io"):
        for entry in load_register_map(map_name).entries.values():
            span = str(entry.address) if entry.count == 1 else f"{entry.address}–{entry.end - 1}"
            assert any(f"`{entry.name}`" in row and f"| {span} |" in row for row in rows), (
                f"docs/protocols/modbus.md has no row for {map_name}.{entry.name} at {span}"
            )


# --------------------------------------------------------------------------- read planning


def test_pump_status_block_is_one_read() -> None:
    pump = load_register_map("infusion_pump")
    names = [
        "state",
        "alarm_bits",
        "delivered_rate_ml_h",
        "volume_infused_ml",
        "line_pressure_mmhg",
        "uptime_s",
    ]
    (block,) = pump.plan_reads(names)
    assert (block.table, block.address, block.count, block.function_code) == ("input", 0, 10, 4)
    registers = [
        1,
        0b1001,
        *CONVERT.convert_to_registers(72.5, DT.FLOAT32),
        *CONVERT.convert_to_registers(3.25, DT.FLOAT32),
        *CONVERT.convert_to_registers(-12.5, DT.FLOAT32),
        0x0001,
        0x0002,
    ]
    assert block.decode(registers) == {
        "state": 1,
        "alarm_bits": 9,
        "delivered_rate_ml_h": 72.5,
        "volume_infused_ml": 3.25,
        "line_pressure_mmhg": -12.5,
        "uptime_s": 65538,
    }
    assert pump.plan_reads(names) is pump.plan_reads(names)


def test_plan_never_reads_undeclared_or_write_only_addresses() -> None:
    pump = load_register_map("infusion_pump")
    blocks = pump.plan_reads(
        ["rate_setpoint_ml_h", "volume_to_be_infused_ml", "syringe_diameter_mm"]
    )
    assert [(b.table, b.address, b.count) for b in blocks] == [
        ("holding", 0, 4),
        ("holding", 10, 2),
    ]
    with pytest.raises(LimitError, match="write-only"):
        pump.plan_reads(["command"])
    gap = _map(
        {
            "a": {"table": "holding", "address": 0, "type": "uint16"},
            "w": {"table": "holding", "address": 1, "type": "uint16", "access": "w"},
            "b": {"table": "holding", "address": 2, "type": "uint16"},
            "c": {"table": "holding", "address": 3, "type": "uint16"},
        }
    )
    assert [(b.address, b.count) for b in gap.plan_reads(["a", "b", "c"])] == [(0, 1), (2, 2)]


def test_plan_bridges_unrequested_readable_entries() -> None:
    register_map = _map(
        {
            name: {"table": "input", "address": i, "type": "uint16"}
            for i, name in enumerate("abcdef")
        }
    )
    (block,) = register_map.plan_reads(["a", "f"])
    assert (block.address, block.count) == (0, 6)
    assert block.decode([10, 11, 12, 13, 14, 15]) == {"a": 10, "f": 15}


def test_plan_respects_pdu_limits() -> None:
    registers = {f"r{i}": {"table": "input", "address": i, "type": "uint16"} for i in range(130)}
    coils = {f"c{i}": {"table": "coil", "address": i} for i in range(2100)}
    register_map = _map({**registers, **coils})
    blocks = register_map.plan_reads(list(registers) + list(coils))
    assert [(b.table, b.address, b.count) for b in blocks] == [
        ("coil", 0, MAX_READ_BITS),
        ("coil", 2000, 100),
        ("input", 0, MAX_READ_REGISTERS),
        ("input", 125, 5),
    ]
    small = _map(registers, max_read_registers=16)
    assert max(b.count for b in small.plan_reads(list(registers))) == 16


def _fewest_blocks(register_map: RegisterMap, names: list[str]) -> int:
    """Independent oracle: dynamic programming over the sorted entries of each table."""
    total = 0
    for table in ("coil", "discrete", "holding", "input"):
        members = sorted(
            {register_map[n] for n in names if register_map[n].table == table},
            key=lambda e: e.address,
        )
        limit = (
            register_map.max_read_bits
            if table in ("coil", "discrete")
            else (register_map.max_read_registers)
        )
        best = [0] + [math.inf] * len(members)
        for end in range(1, len(members) + 1):
            for start in range(end):
                span = members[start:end]
                first, last = span[0].address, max(e.end for e in span)
                inside = range(first, last)
                covered = all(
                    (e := register_map.entry_at(table, a)) is not None and e.readable
                    for a in inside
                )
                if covered and last - first <= limit:
                    best[end] = min(best[end], best[start] + 1)
        total += int(best[-1])
    return total


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_plan_is_minimal_and_valid(data: st.DataObject) -> None:
    kinds = st.sampled_from(["uint16", "uint32", "float32"])
    address = 0
    registers: dict[str, dict[str, Any]] = {}
    for i in range(data.draw(st.integers(1, 25))):
        address += data.draw(st.integers(0, 3))
        kind = data.draw(kinds)
        access = data.draw(st.sampled_from(["r", "rw", "w"]))
        registers[f"e{i}"] = {
            "table": "holding",
            "address": address,
            "type": kind,
            "access": access,
        }
        address += 2 if kind != "uint16" else 1
    register_map = _map(registers, max_read_registers=data.draw(st.integers(2, 12)))
    readable = [n for n, e in register_map.entries.items() if e.readable]
    assume(readable)
    names = data.draw(st.lists(st.sampled_from(readable), min_size=1, unique=True))
    blocks = register_map.plan_reads(names)
    assert sorted(e.name for b in blocks for e in b.entries) == sorted(names)
    for block in blocks:
        assert block.count <= register_map.max_read_registers
        for address_in in range(block.address, block.address + block.count):
            entry = register_map.entry_at("holding", address_in)
            assert entry is not None
            assert entry.readable
    assert len(blocks) == _fewest_blocks(register_map, names)


def test_read_block_decode_rejects_short_and_out_of_range_replies() -> None:
    block = ReadBlock("input", 2, 2, (load_register_map("infusion_pump")["delivered_rate_ml_h"],))
    with pytest.raises(ProtocolError, match="returned 1"):
        block.decode([1])
    with pytest.raises(ProtocolError, match=r"outside 0\.\.65535") as info:
        block.decode([1, 70000])
    assert info.value.raw == struct.pack(">H", 1)
