"""Modbus register maps as data: TOML files validated with pydantic, and a pure codec.

A register map says, per named value, where it lives on a Modbus device and how its raw
16-bit registers (or single bits) turn into an engineering value::

    [map]
    name = "infusion_pump"
    device_id = 1

    [registers.rate_setpoint_ml_h]
    table = "holding"        # coil | discrete | input | holding
    address = 0              # 0-based protocol address (what goes on the wire)
    type = "float32"         # bool | uint16 | int16 | uint32 | int32 | float32
    word_order = "ABCD"      # 32-bit types: ABCD (high word first) or CDAB
    units = "mL/h"
    min = 0.0
    max = 1500.0
    access = "rw"            # r | w | rw
    description = "Rate setpoint"

Integer types may carry a ``scale`` (engineering value = raw × scale), an enumeration
(``values = {0 = "stopped", 1 = "infusing"}``) or named bits (``bits = {0 = "occlusion"}``).
The full reference is ``docs/protocols/modbus.md``.

The codec is pure (no I/O): :meth:`RegisterMap.encode` turns an engineering value into
registers, refusing with :class:`~medtwin.drivers.errors.LimitError` *before anything is sent* a
value that is outside min/max, not in the enumeration, or not writable;
:meth:`ReadBlock.decode` turns registers back into values; :meth:`RegisterMap.plan_reads`
groups names into the fewest contiguous reads per table within the Modbus PDU limits
(125 registers, 2000 bits per read: MODBUS Application Protocol Specification V1.1b3,
§6.1-6.4) and never across an address the map does not declare readable, so a device that
answers undeclared addresses with exception 2 is never asked for one.

Data layout follows the Modbus application protocol (registers are big-endian 16-bit
words); 32-bit values span two consecutive registers, high word first (``ABCD``) unless
the map says ``CDAB`` (low word first, as many PLCs store them).

The conversions are hand-written with :mod:`struct` rather than pymodbus's
``convert_to_registers``/``convert_from_registers``: a read block decodes all its values
from one packed buffer, with pre-compiled formats, and the codec stays usable without a
client object. The tests check both directions against pymodbus's converters.
"""

from __future__ import annotations

import itertools
import math
import re
import struct
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

from medtwin.drivers.errors import ConfigurationError, LimitError, ProtocolError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "MAX_READ_BITS",
    "MAX_READ_REGISTERS",
    "MAX_WRITE_BITS",
    "MAX_WRITE_REGISTERS",
    "Access",
    "ReadBlock",
    "RegisterEntry",
    "RegisterMap",
    "Table",
    "Value",
    "ValueType",
    "WordOrder",
    "load_register_map",
    "shipped_register_maps",
]

Table = Literal["coil", "discrete", "input", "holding"]
ValueType = Literal["bool", "uint16", "int16", "uint32", "int32", "float32"]
WordOrder = Literal["ABCD", "CDAB"]
Access = Literal["r", "w", "rw"]
Value = bool | int | float

#: Quantity limits of one request (Modbus application protocol V1.1b3, §6.1-6.4, 6.11, 6.12).
MAX_READ_REGISTERS = 125
MAX_READ_BITS = 2000
MAX_WRITE_REGISTERS = 123
MAX_WRITE_BITS = 1968

BIT_TABLES: frozenset[str] = frozenset({"coil", "discrete"})
READ_ONLY_TABLES: frozenset[str] = frozenset({"discrete", "input"})
TABLE_ORDER: tuple[Table, ...] = ("coil", "discrete", "holding", "input")

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_FLOAT32_MAX = 3.4028234663852886e38

# type → (struct format, registers, raw min, raw max, is integer)
_TYPES: dict[str, tuple[str, int, float, float, bool]] = {
    "uint16": (">H", 1, 0, 0xFFFF, True),
    "int16": (">h", 1, -0x8000, 0x7FFF, True),
    "uint32": (">I", 2, 0, 0xFFFF_FFFF, True),
    "int32": (">i", 2, -0x8000_0000, 0x7FFF_FFFF, True),
    "float32": (">f", 2, -_FLOAT32_MAX, _FLOAT32_MAX, False),
}
_WORDS2 = struct.Struct(">HH")
_MAP_DIR = "register_maps"


# --------------------------------------------------------------------------- file schema


class _EntrySpec(BaseModel):
    """One ``[registers.NAME]`` table as written in the file (syntax only)."""

    model_config = ConfigDict(extra="forbid", strict=False)

    table: Table
    address: int = Field(ge=0, le=0xFFFF)
    type: ValueType | None = None
    word_order: WordOrder | None = None
    scale: float | None = None
    units: str = ""
    min: float | None = None
    max: float | None = None
    access: Access | None = None
    description: str = ""
    values: dict[int, str] | None = None
    bits: dict[int, str] | None = None


class _MapInfo(BaseModel):
    """The ``[map]`` table: what the map describes and map-wide defaults."""

    model_config = ConfigDict(extra="forbid")

    name: str
    title: str = ""
    description: str = ""
    version: str = ""
    device_id: int = Field(default=1, ge=0, le=255)
    word_order: WordOrder = "ABCD"
    max_read_registers: int = Field(default=MAX_READ_REGISTERS, ge=1, le=MAX_READ_REGISTERS)
    max_read_bits: int = Field(default=MAX_READ_BITS, ge=1, le=MAX_READ_BITS)
    vendor: str = ""
    product_code: str = ""
    revision: str = ""


class _MapSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    map: _MapInfo
    registers: dict[str, _EntrySpec] = Field(min_length=1)


# --------------------------------------------------------------------------- entries


@dataclass(frozen=True, slots=True, eq=False)
class RegisterEntry:
    """One named value of a register map (validated, immutable).

    ``count`` is the number of registers (1 or 2) for register tables and 1 for bits.
    ``minimum``/``maximum`` are engineering-unit limits (the type's representable range
    when the file gives none).
    """

    name: str
    table: Table
    address: int
    type: ValueType
    word_order: WordOrder
    scale: float
    units: str
    minimum: float
    maximum: float
    access: Access
    description: str = field(default="", repr=False)
    values: Mapping[int, str] = field(default_factory=dict, repr=False)
    bits: Mapping[int, str] = field(default_factory=dict, repr=False)
    count: int = 1
    _codes: Mapping[str, int] = field(default_factory=dict, repr=False)
    _struct: struct.Struct | None = field(default=None, repr=False)

    @property
    def readable(self) -> bool:
        return "r" in self.access

    @property
    def writable(self) -> bool:
        return "w" in self.access

    @property
    def is_bit(self) -> bool:
        return self.table in BIT_TABLES

    @property
    def end(self) -> int:
        """One past the last address the entry occupies."""
        return self.address + self.count

    def label(self, raw: int) -> str | None:
        """The enumeration label of ``raw`` (``None`` if the value is not enumerated)."""
        return self.values.get(raw)

    def code(self, label: str) -> int:
        """The raw value of an enumeration label. KeyError if the label is unknown."""
        return self._codes[label]

    def flags(self, raw: int) -> frozenset[str]:
        """Names of the bits set in ``raw``; bits the map does not name are ignored."""
        return frozenset(name for bit, name in self.bits.items() if raw >> bit & 1)

    # -- codec ---------------------------------------------------------------------------

    def check(self, value: Value, *, device: str | None = None) -> None:
        """Refuse (LimitError) a value that must not be written to this entry.

        Checks, in order: the entry is writable; the value has the right kind (bool for
        bits, a finite number for registers); it lies within [min, max]; an enumerated
        entry gets one of its values; an unscaled integer entry gets a whole number.
        """
        who = f"{self.name!r}"
        if not self.writable:
            raise LimitError(
                f"{who} is read-only (access {self.access!r}); nothing was sent", device=device
            )
        if self.is_bit:
            if not isinstance(value, bool | int) or value not in (0, 1):
                raise LimitError(
                    f"{who} is a bit and takes True/False, got {value!r}; nothing was sent",
                    device=device,
                )
            return
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise LimitError(
                f"{who} takes a number, got {value!r}; nothing was sent", device=device
            )
        try:
            number = float(value)
        except OverflowError:  # an int beyond float range is beyond every limit too
            number = math.inf
        if not math.isfinite(number) or not self.minimum <= number <= self.maximum:
            unit = f" {self.units}" if self.units else ""
            raise LimitError(
                f"{who} = {value!r}{unit} is outside the declared limits "
                f"[{self.minimum:g}, {self.maximum:g}]{unit}; nothing was sent",
                device=device,
            )
        if self.values and (not number.is_integer() or int(number) not in self.values):
            allowed = ", ".join(f"{code} ({label})" for code, label in self.values.items())
            raise LimitError(
                f"{who} = {value!r} is not one of {allowed}; nothing was sent", device=device
            )
        if self.type != "float32" and self.scale == 1.0 and not number.is_integer():
            raise LimitError(
                f"{who} is an integer ({self.type}), got {value!r}; nothing was sent", device=device
            )

    def to_registers(self, value: Value) -> tuple[int, ...]:
        """Raw registers for ``value`` (no limit/access checks: see :meth:`check`).

        Scaled integers are rounded to the nearest step. Raises ValueError if the value
        cannot be represented in the entry's type.
        """
        if self._struct is None:
            raise ValueError(f"{self.name!r} is a bit, not a register value")
        _, regs, raw_min, raw_max, integer = _TYPES[self.type]
        if integer:
            raw: float = round(float(value) / self.scale) if self.scale != 1.0 else value
            if not (isinstance(raw, int) or float(raw).is_integer()):
                raise ValueError(f"{self.name!r}: {value!r} is not an integer")
            raw = int(raw)
            if not raw_min <= raw <= raw_max:
                raise ValueError(f"{self.name!r}: {value!r} does not fit in {self.type}")
        else:
            raw = float(value)
            if math.isfinite(raw) and abs(raw) > _FLOAT32_MAX:
                raise ValueError(f"{self.name!r}: {value!r} does not fit in float32")
        packed = self._struct.pack(raw)
        if regs == 1:
            return (int.from_bytes(packed, "big"),)
        high, low = _WORDS2.unpack(packed)
        return (high, low) if self.word_order == "ABCD" else (low, high)

    def from_registers(self, registers: Sequence[int]) -> Value:
        """Engineering value from the entry's raw registers (``count`` of them)."""
        if self._struct is None:
            raise ValueError(f"{self.name!r} is a bit, not a register value")
        if self.count == 1:
            packed = registers[0].to_bytes(2, "big")
        elif self.word_order == "ABCD":
            packed = _WORDS2.pack(registers[0], registers[1])
        else:
            packed = _WORDS2.pack(registers[1], registers[0])
        raw = self._struct.unpack(packed)[0]
        return self._scaled(raw)

    def _scaled(self, raw: int | float) -> Value:
        if self.scale == 1.0:
            return raw
        return raw * self.scale

    def _decode_from(self, buffer: bytes, byte_offset: int) -> Value:
        assert self._struct is not None  # register entries only (checked at plan time)
        if self.count == 2 and self.word_order == "CDAB":
            low, high = _WORDS2.unpack_from(buffer, byte_offset)
            raw = self._struct.unpack(_WORDS2.pack(high, low))[0]
        else:
            raw = self._struct.unpack_from(buffer, byte_offset)[0]
        return self._scaled(raw)


# --------------------------------------------------------------------------- read plans


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request: ``count`` registers (or bits) of ``table`` from ``address``.

    ``entries`` are the requested entries inside the block (the block may span other
    readable entries to stay contiguous; those are read but not decoded).
    """

    table: Table
    address: int
    count: int
    entries: tuple[RegisterEntry, ...]

    @property
    def function_code(self) -> int:
        """The Modbus read function: 1 coils, 2 discrete inputs, 3 holding, 4 input."""
        return _READ_FC[self.table]

    def decode(
        self, data: Sequence[int] | Sequence[bool], *, device: str | None = None
    ) -> dict[str, Value]:
        """Values of the block's entries from the registers (or bits) a device returned.

        Raises
        ------
        ProtocolError
            If the reply holds too few values or a register outside 0..65535.
        """
        if self.table in BIT_TABLES:
            if len(data) < self.count:
                raise ProtocolError(
                    f"read of {self.count} {self.table}s at {self.address} returned "
                    f"{len(data)} bits",
                    device=device,
                )
            base = self.address
            return {e.name: bool(data[e.address - base]) for e in self.entries}
        if len(data) != self.count:
            raise ProtocolError(
                f"read of {self.count} {self.table} registers at {self.address} returned "
                f"{len(data)}",
                raw=_best_effort_bytes(data),
                device=device,
            )
        try:
            buffer = struct.pack(f">{self.count}H", *data)
        except struct.error:
            raise ProtocolError(
                f"read of {self.table} registers at {self.address} returned a value "
                "outside 0..65535",
                raw=_best_effort_bytes(data),
                device=device,
            ) from None
        base = self.address
        return {e.name: e._decode_from(buffer, 2 * (e.address - base)) for e in self.entries}


_READ_FC: dict[str, int] = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}


def _best_effort_bytes(data: Sequence[int] | Sequence[bool]) -> bytes:
    return b"".join(int(v).to_bytes(2, "big", signed=False) for v in data if 0 <= v <= 0xFFFF)


# --------------------------------------------------------------------------- the map


class RegisterMap:
    """A validated register map: entries by name plus the codec and read planner.

    Build one with :func:`load_register_map` (from a file or a shipped name) or
    :meth:`from_dict`.
    """

    def __init__(
        self,
        entries: Iterable[RegisterEntry],
        *,
        name: str,
        source: str = "",
        title: str = "",
        description: str = "",
        version: str = "",
        device_id: int = 1,
        max_read_registers: int = MAX_READ_REGISTERS,
        max_read_bits: int = MAX_READ_BITS,
        vendor: str = "",
        product_code: str = "",
        revision: str = "",
    ) -> None:
        self.name = name
        self.source = source or name
        self.title = title
        self.description = description
        self.version = version
        self.device_id = device_id
        self.max_read_registers = max_read_registers
        self.max_read_bits = max_read_bits
        self.vendor = vendor
        self.product_code = product_code
        self.revision = revision
        self.entries: dict[str, RegisterEntry] = {e.name: e for e in entries}
        self._by_address: dict[str, dict[int, RegisterEntry]] = {t: {} for t in TABLE_ORDER}
        for entry in self.entries.values():
            for address in range(entry.address, entry.end):
                self._by_address[entry.table][address] = entry
        self._plans: dict[tuple[str, ...], tuple[ReadBlock, ...]] = {}

    def __repr__(self) -> str:
        return f"RegisterMap({self.name!r}, {len(self.entries)} entries, source={self.source!r})"

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __getitem__(self, name: str) -> RegisterEntry:
        return self.entry(name)

    def entry(self, name: str) -> RegisterEntry:
        """The entry called ``name``; ConfigurationError naming the map if there is none."""
        try:
            return self.entries[name]
        except KeyError:
            raise ConfigurationError(
                f"register map {self.name!r} has no entry {name!r}; it has "
                + ", ".join(sorted(self.entries)),
                source=self.source,
            ) from None

    def entry_at(self, table: str, address: int) -> RegisterEntry | None:
        """The entry occupying ``address`` of ``table`` (None if the map declares none)."""
        return self._by_address[table].get(address)

    def in_table(self, table: str) -> list[RegisterEntry]:
        """Entries of one table in address order."""
        return sorted(
            (e for e in self.entries.values() if e.table == table), key=lambda e: e.address
        )

    # -- codec ---------------------------------------------------------------------------

    def encode(
        self, name: str, value: Value, *, device: str | None = None
    ) -> tuple[int, ...] | bool:
        """Registers (or the bit) to write for ``name = value``, after every check.

        Raises
        ------
        ConfigurationError
            ``name`` is not in the map.
        LimitError
            The entry is read-only, or the value is of the wrong kind, outside min/max,
            not one of the enumerated values, or not a whole number for an integer.
        """
        entry = self.entry(name)
        entry.check(value, device=device)
        if entry.is_bit:
            return bool(value)
        return entry.to_registers(value)

    def decode(self, name: str, data: Sequence[int] | Sequence[bool]) -> Value:
        """Engineering value of ``name`` from its own registers (or its one bit)."""
        entry = self.entry(name)
        if entry.is_bit:
            if len(data) != 1:
                raise ProtocolError(f"{name!r} is one bit, got {len(data)} values")
            return bool(data[0])
        if len(data) != entry.count or any(not 0 <= int(r) <= 0xFFFF for r in data):
            raise ProtocolError(
                f"{name!r} needs {entry.count} register(s) in 0..65535, got {list(data)!r}",
                raw=_best_effort_bytes(data),
            )
        return entry.from_registers([int(r) for r in data])

    # -- read planning -------------------------------------------------------------------

    def plan_reads(
        self, names: Iterable[str], *, device: str | None = None
    ) -> tuple[ReadBlock, ...]:
        """The fewest contiguous reads that fetch every entry in ``names``.

        Entries of one table merge into one block while the block stays within the PDU
        limit (``max_read_registers`` / ``max_read_bits``) and every address between
        them belongs to a readable entry of the map. Plans are cached per name tuple.

        Raises
        ------
        ConfigurationError
            A name is not in the map.
        LimitError
            A name is write-only.
        """
        key = tuple(names)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plan(key, device)
            self._plans[key] = plan
        return plan

    def _plan(self, names: tuple[str, ...], device: str | None) -> tuple[ReadBlock, ...]:
        wanted: dict[str, RegisterEntry] = {}
        for name in names:
            entry = self.entry(name)
            if not entry.readable:
                raise LimitError(
                    f"{name!r} is write-only (access {entry.access!r}) and cannot be read; "
                    "nothing was sent",
                    device=device,
                )
            wanted[name] = entry
        blocks: list[ReadBlock] = []
        for table in TABLE_ORDER:
            members = sorted(
                (e for e in wanted.values() if e.table == table), key=lambda e: e.address
            )
            if not members:
                continue
            limit = self.max_read_bits if table in BIT_TABLES else self.max_read_registers
            index = self._by_address[table]
            start, end, current = members[0].address, members[0].end, [members[0]]
            for entry in members[1:]:
                new_end = max(end, entry.end)
                bridged = all(
                    (e := index.get(a)) is not None and e.readable
                    for a in range(end, entry.address)
                )
                if bridged and new_end - start <= limit:
                    end = new_end
                    current.append(entry)
                    continue
                blocks.append(ReadBlock(table, start, end - start, tuple(current)))
                start, end, current = entry.address, entry.end, [entry]
            blocks.append(ReadBlock(table, start, end - start, tuple(current)))
        return tuple(blocks)

    # -- construction --------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "") -> RegisterMap:
        """Validate the parsed TOML document ``data``.

        Raises
        ------
        ConfigurationError
            Naming ``source`` and the dotted field, and what was expected there.
        """
        try:
            spec = _MapSpec.model_validate(data)
        except ValidationError as exc:
            raise _configuration_error(exc, source) from None
        info = spec.map
        entries = [
            _build_entry(name, entry, info.word_order, source)
            for name, entry in spec.registers.items()
        ]
        _check_overlaps(entries, source)
        return cls(
            entries,
            name=info.name,
            source=source,
            title=info.title,
            description=info.description,
            version=info.version,
            device_id=info.device_id,
            max_read_registers=info.max_read_registers,
            max_read_bits=info.max_read_bits,
            vendor=info.vendor,
            product_code=info.product_code,
            revision=info.revision,
        )


def _configuration_error(exc: ValidationError, source: str) -> ConfigurationError:
    problems = []
    first_field = ""
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        first_field = first_field or where
        detail = error["msg"]
        if error["type"] != "missing":
            detail += f" (got {error['input']!r})"
        problems.append(f"{where}: {detail}" if where else detail)
    message = problems[0] if len(problems) == 1 else "; ".join(problems)
    if len(problems) == 1 and first_field and message.startswith(first_field + ": "):
        message = message[len(first_field) + 2 :]
    elif len(problems) > 1:
        message = f"{len(problems)} problems: {message}"
    return ConfigurationError(message, source=source or None, field=first_field or None)


def _build_entry(
    name: str, spec: _EntrySpec, default_order: WordOrder, source: str
) -> RegisterEntry:
    def fail(field_name: str | None, message: str) -> ConfigurationError:
        where = f"registers.{name}" + (f".{field_name}" if field_name else "")
        return ConfigurationError(message, source=source or None, field=where)

    if not _NAME.match(name):
        raise fail(
            None,
            "entry names are lower-case identifiers (a-z, 0-9, _), "
            f"starting with a letter; got {name!r}",
        )
    is_bit = spec.table in BIT_TABLES
    kind: ValueType
    if is_bit:
        if spec.type not in (None, "bool"):
            raise fail(
                "type", f"a {spec.table} holds one bit: expected type 'bool', got {spec.type!r}"
            )
        kind = "bool"
        for forbidden in ("word_order", "scale", "min", "max", "values", "bits"):
            if getattr(spec, forbidden) is not None:
                raise fail(forbidden, f"does not apply to a {spec.table} (a single bit)")
    else:
        if spec.type is None:
            raise fail(
                "type",
                f"a {spec.table} register needs a type: one of "
                + ", ".join(t for t in get_args(ValueType) if t != "bool"),
            )
        if spec.type == "bool":
            raise fail(
                "type",
                f"'bool' is for coils and discrete inputs; a {spec.table} "
                "register is uint16, int16, uint32, int32 or float32",
            )
        kind = spec.type
    access: Access = spec.access or ("r" if spec.table in READ_ONLY_TABLES else "rw")
    if spec.table in READ_ONLY_TABLES and access != "r":
        raise fail(
            "access", f"{spec.table} is a read-only table: access must be 'r', got {access!r}"
        )
    if is_bit:
        return RegisterEntry(
            name,
            spec.table,
            spec.address,
            "bool",
            default_order,
            1.0,
            spec.units,
            0.0,
            1.0,
            access,
            spec.description,
        )

    fmt, count, raw_min, raw_max, integer = _TYPES[kind]
    if spec.word_order is not None and count != 2:
        raise fail("word_order", f"applies to 32-bit types only, not {kind}")
    order: WordOrder = spec.word_order or default_order
    if spec.address + count - 1 > 0xFFFF:
        raise fail("address", f"a {kind} at {spec.address} runs past address 65535")
    scale = 1.0 if spec.scale is None else spec.scale
    if spec.scale is not None:
        if not integer:
            raise fail(
                "scale", "applies to integer types only; float32 is already in engineering units"
            )
        if not math.isfinite(scale) or scale <= 0:
            raise fail("scale", f"expected a finite number > 0, got {spec.scale!r}")
    low, high = raw_min * scale, raw_max * scale
    minimum = low if spec.min is None else spec.min
    maximum = high if spec.max is None else spec.max
    for label, bound in (("min", minimum), ("max", maximum)):
        if not math.isfinite(bound) or not low <= bound <= high:
            raise fail(
                label,
                f"{bound!r} is not representable as {kind}"
                + (f" × {scale:g}" if scale != 1.0 else "")
                + f": expected a value in [{low:g}, {high:g}]",
            )
    if minimum > maximum:
        raise fail("min", f"min {minimum:g} is greater than max {maximum:g}")

    values: dict[int, str] = {}
    bits: dict[int, str] = {}
    for label, table in (("values", spec.values), ("bits", spec.bits)):
        if table is None:
            continue
        if not integer or scale != 1.0:
            raise fail(label, "applies to unscaled integer types only")
        if label == "bits" and kind not in ("uint16", "uint32"):
            raise fail(label, f"named bits need an unsigned type, not {kind}")
        top = 16 * count
        seen: set[str] = set()
        for key, text in table.items():
            if label == "values" and not raw_min <= key <= raw_max:
                raise fail(f"{label}.{key}", f"{key} does not fit in {kind}")
            if label == "bits" and not 0 <= key < top:
                raise fail(f"{label}.{key}", f"bit numbers of a {kind} run 0..{top - 1}")
            if not _NAME.match(text):
                raise fail(f"{label}.{key}", f"labels are lower-case identifiers, got {text!r}")
            if text in seen:
                raise fail(f"{label}.{key}", f"label {text!r} is used twice")
            seen.add(text)
        (values if label == "values" else bits).update(sorted(table.items()))
    return RegisterEntry(
        name,
        spec.table,
        spec.address,
        kind,
        order,
        scale,
        spec.units,
        float(minimum),
        float(maximum),
        access,
        spec.description,
        values=values,
        bits=bits,
        count=count,
        _codes={text: code for code, text in values.items()},
        _struct=struct.Struct(fmt),
    )


def _check_overlaps(entries: list[RegisterEntry], source: str) -> None:
    for table in TABLE_ORDER:
        members = sorted((e for e in entries if e.table == table), key=lambda e: e.address)
        for before, after in itertools.pairwise(members):
            if after.address < before.end:
                raise ConfigurationError(
                    f"{after.name!r} ({table} {after.address}) overlaps {before.name!r} "
                    f"({table} {before.address}..{before.end - 1}); every address belongs "
                    "to one entry",
                    source=source or None,
                    field=f"registers.{after.name}.address",
                )


# --------------------------------------------------------------------------- loading


def shipped_register_maps() -> list[str]:
    """Names of the maps shipped in ``drivers/register_maps`` (usable as ``register_map=``)."""
    folder = resources.files("medtwin.drivers").joinpath(_MAP_DIR)
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_register_map(name_or_path: str | Path) -> RegisterMap:
    """Load a register map from a TOML file, or a shipped map by name (``"infusion_pump"``).

    A value with a path separator or a ``.toml`` suffix is a file; anything else names a
    shipped map. Maps are cached per file and modification time.

    Raises
    ------
    ConfigurationError
        The file is missing or unreadable, is not valid TOML, or does not describe a
        valid map (the message names file:field and what was expected).
    """
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or "/" in text or text.endswith(".toml"):
        path = Path(text).expanduser()
    else:
        path = Path(str(resources.files("medtwin.drivers").joinpath(_MAP_DIR, f"{text}.toml")))
        if not path.is_file():
            raise ConfigurationError(
                f"no shipped register map called {text!r}; shipped maps: "
                + ", ".join(shipped_register_maps())
                + " (or give the path of a .toml file)",
                source="register_map",
            )
    try:
        stat = path.stat()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the register map: {exc.strerror}", source=str(path)
        ) from None
    return _load_cached(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@cache
def _load_cached(path: str, mtime_ns: int, size: int) -> RegisterMap:
    try:
        with Path(path).open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"not valid TOML: {exc}", source=path) from None
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the register map: {exc.strerror}", source=path
        ) from None
    return RegisterMap.from_dict(data, source=path)
