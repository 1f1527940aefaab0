"""Modbus RTU / Modbus TCP emulators of the reference infusion pump and the bench I/O module.

Both serve a register map (:mod:`medtwin.drivers.register_map`, by default the shipped
``infusion_pump`` / ``bench_io`` maps) over

* **Modbus RTU on a pty** (``start()``): the returned port is a path any Modbus master
  opens like a serial port (a symlink to the pty, so the path survives a ``disconnect``
  fault the way ``/dev/serial/by-id/...`` survives unplugging a USB adapter);
* **Modbus TCP** (``start(tcp=("127.0.0.1", 0))``, port string ``tcp://127.0.0.1:N``), or
  RTU framing over TCP (``tcp_framing="rtu"``, port string ``socket://127.0.0.1:N``).

Every register read evaluates the mechanism (:mod:`medtwin.drivers.emulators.mechanisms`) at
``clock.now()``; writes go to the mechanism, and a write it refuses is exception 3.

Protocol references: MODBUS Application Protocol Specification V1.1b3 (function codes,
quantity limits, exception codes, Read Device Identification 43/14), MODBUS over Serial
Line V1.02 (RTU framing, CRC-16, t3.5 = 1.75 ms above 19200 baud, broadcast address 0,
§2.5.1.1), MODBUS Messaging on TCP/IP Implementation Guide V1.0b (MBAP header, unit
identifier 0xFF/0 for a directly connected device). Supported function codes: 1, 2, 3, 4,
5, 6, 15, 16, 22, 23 and 43/14; any other is exception 1. Quantities outside the
specification's limits are exception 3, addresses the map does not declare (or that split
a 32-bit value on a write) exception 2, values outside the map's min/max exception 3.

pymodbus does the PDU work: :class:`pymodbus.pdu.DecodePDU` decodes requests, each request
PDU's ``datastore_update`` runs against this module's datastore (the two coroutines
``async_getValues``/``async_setValues`` pymodbus defines for it) and encodes the response.
The framing is :mod:`medtwin.drivers.modbus.codec`'s (RTU by t3.5 silence, MBAP) and the
port, the faults and the pacing are the one emulator server's
(:mod:`medtwin.drivers.emulators.server`), as for every other protocol; this module adds
the slave (:class:`ModbusSlaveProtocol`) and the register semantics. pymodbus's
``ModbusSerialServer`` / ``ModbusTcpServer`` are not used because (1) the fault plan must
act on each reply (drop it, delay it, break its CRC, put garbage in front, drop the
line), and pacing must hold each reply back for its wire time plus the t3.5 gaps;
(2) pymodbus's serial transport needs a device path on both ends, so a pty would need a
second pty and a relay; (3) pymodbus answers Read
Device Identification from one process-wide ``ModbusControlBlock``, so a pump and a bench
I/O module in one process would share an identity, and it answers an out-of-range
quantity with exception 1 where the specification says 3.
"""

from __future__ import annotations

import abc
import logging
import math
import struct
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, Self, TypeVar, cast

from medtwin.drivers.base import PumpState
from medtwin.drivers.clock import Clock
from medtwin.drivers.emulators.faults import FaultPlan
from medtwin.drivers.emulators.mechanisms import BenchIOMechanism, PumpMechanism, PumpSnapshot
from medtwin.drivers.emulators.pacing import Pacing
from medtwin.drivers.emulators.server import EmulatorServer, ProtocolHandler, SerialDeviceEmulator
from medtwin.drivers.errors import ConfigurationError, LimitError
from medtwin.drivers.modbus.codec import (
    MAX_PDU,
    MbapFrame,
    MbapFramer,
    RtuFrame,
    RtuRequestFramer,
    exception_pdu,
    mbap_frame,
    rtu_frame,
)
from medtwin.drivers.register_map import (
    BIT_TABLES,
    MAX_READ_BITS,
    MAX_READ_REGISTERS,
    MAX_WRITE_BITS,
    MAX_WRITE_REGISTERS,
    RegisterEntry,
    RegisterMap,
    Value,
    load_register_map,
)
from pymodbus.constants import ExcCodes
from pymodbus.pdu import DecodePDU

__all__ = [
    "ModbusBenchIOEmulator",
    "ModbusDatastore",
    "ModbusPumpEmulator",
    "ModbusSlaveProtocol",
    "modbus_t35_s",
]

_log = logging.getLogger(__name__)

_Mechanism = TypeVar("_Mechanism", PumpMechanism, BenchIOMechanism)

#: Function codes the emulators implement.
SUPPORTED_FUNCTIONS: frozenset[int] = frozenset({1, 2, 3, 4, 5, 6, 15, 16, 22, 23, 43})
_MEI_DEVICE_ID = 0x0E
#: Conformity level 0x83: basic, regular and extended objects, stream and individual access.
_CONFORMITY = 0x83
_TABLE_OF_FC: dict[int, str] = {
    1: "coil", 5: "coil", 15: "coil",
    2: "discrete",
    3: "holding", 6: "holding", 16: "holding", 22: "holding", 23: "holding",
    4: "input",
}  # fmt: skip


def modbus_t35_s(pacing: Pacing) -> float:
    """The RTU inter-frame silence t3.5 for ``pacing``'s line settings (seconds).

    3.5 character times, or ``pacing.interframe_chars`` if set; fixed at 1.75 ms above
    19200 baud (MODBUS over Serial Line V1.02, §2.5.1.1).
    """
    return pacing.frame_gap_s(3.5)


# --------------------------------------------------------------------------- the datastore


def _check_quantities(pdu: bytes) -> int | None:
    """Exception code for a request that breaks the spec's length/quantity rules."""
    fc = pdu[0]
    body = pdu[1:]
    if fc in (1, 2, 3, 4, 5, 6):
        if len(body) != 4:
            return ExcCodes.ILLEGAL_VALUE
        address, quantity = struct.unpack(">HH", body)
        if fc == 5:
            return None if quantity in (0x0000, 0xFF00) else ExcCodes.ILLEGAL_VALUE
        if fc == 6:
            return None
        limit = MAX_READ_BITS if fc in (1, 2) else MAX_READ_REGISTERS
        if not 1 <= quantity <= limit:
            return ExcCodes.ILLEGAL_VALUE
        return ExcCodes.ILLEGAL_ADDRESS if address + quantity > 0x10000 else None
    if fc in (15, 16):
        if len(body) < 5:
            return ExcCodes.ILLEGAL_VALUE
        address, quantity, byte_count = struct.unpack(">HHB", body[:5])
        limit, needed = (
            (MAX_WRITE_BITS, (quantity + 7) // 8)
            if fc == 15
            else (MAX_WRITE_REGISTERS, 2 * quantity)
        )
        if not 1 <= quantity <= limit or byte_count != needed or len(body) != 5 + byte_count:
            return ExcCodes.ILLEGAL_VALUE
        return ExcCodes.ILLEGAL_ADDRESS if address + quantity > 0x10000 else None
    if fc == 22:
        return None if len(body) == 6 else ExcCodes.ILLEGAL_VALUE
    if fc == 23:
        if len(body) < 9:
            return ExcCodes.ILLEGAL_VALUE
        read_at, read_n, write_at, write_n, byte_count = struct.unpack(">HHHHB", body[:9])
        if (
            not 1 <= read_n <= MAX_READ_REGISTERS
            or not 1 <= write_n <= 121
            or byte_count != 2 * write_n
            or len(body) != 9 + byte_count
        ):
            return ExcCodes.ILLEGAL_VALUE
        if read_at + read_n > 0x10000 or write_at + write_n > 0x10000:
            return ExcCodes.ILLEGAL_ADDRESS
    return None


ReadHook = Callable[[list[RegisterEntry]], Mapping[str, Value]]
WriteHook = Callable[[RegisterEntry, Value], None]
IdentityHook = Callable[[], Mapping[int, str]]


class ModbusDatastore:
    """The slave side of a register map: answers request PDUs from hooks.

    ``read(entries)`` returns the current engineering value of each entry (one snapshot
    of the mechanism per request); ``write(entry, value)`` carries out a write and raises
    ValueError or RuntimeError to refuse it (→ exception 3); ``identity()`` gives the
    Read Device Identification objects (id → text).

    ``async_getValues``/``async_setValues`` are the datastore interface pymodbus's request
    PDUs call from ``datastore_update``.
    """

    def __init__(
        self,
        register_map: RegisterMap,
        *,
        read: ReadHook,
        write: WriteHook,
        identity: IdentityHook,
    ) -> None:
        self.map = register_map
        self._read = read
        self._write = write
        self._identity = identity
        self._decoder = DecodePDU(True)
        self._echo: tuple[int, int, list[int] | list[bool]] | None = None

    async def respond(self, pdu: bytes) -> bytes:
        """The response PDU (normal or exception) to a request PDU."""
        if not pdu:
            return exception_pdu(0, ExcCodes.ILLEGAL_FUNCTION)
        fc = pdu[0]
        if fc not in SUPPORTED_FUNCTIONS:
            return exception_pdu(fc, ExcCodes.ILLEGAL_FUNCTION)
        if fc == 43:
            return self._device_identification(pdu)
        problem = _check_quantities(pdu)
        if problem is not None:
            return exception_pdu(fc, problem)
        request = self._decoder.decode(pdu)
        if request is None or request.function_code != fc:
            return exception_pdu(fc, ExcCodes.ILLEGAL_VALUE)
        self._echo = None
        try:
            # pymodbus types the datastore as ModbusServerContext; it only calls the two
            # coroutines below.
            response = await request.datastore_update(cast(Any, self), 0)
        except Exception:  # a fault in the physics must not take the port down
            _log.exception("Modbus emulator %s: request %s failed", self.map.name, pdu.hex())
            return exception_pdu(fc, ExcCodes.DEVICE_FAILURE)
        return bytes((response.function_code,)) + response.encode()

    # -- pymodbus datastore interface ------------------------------------------------------

    async def async_getValues(  # noqa: N802 - pymodbus's name
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        if func_code in (5, 6) and self._echo is not None and self._echo[0] == func_code:
            # FC 5/6 answer with an echo of what was written (also for write-only entries).
            return self._echo[2]
        table = _TABLE_OF_FC[func_code]
        entries = self._cover(table, address, count, write=False)
        if entries is None:
            return ExcCodes.ILLEGAL_ADDRESS
        values = self._read(entries)
        if table in BIT_TABLES:
            return [bool(values[e.name]) for e in entries]
        words: list[int] = []
        first = entries[0].address
        try:
            for entry in entries:
                words.extend(entry.to_registers(values[entry.name]))
        except (ValueError, OverflowError, KeyError):
            return ExcCodes.DEVICE_FAILURE
        return words[address - first : address - first + count]

    async def async_setValues(  # noqa: N802 - pymodbus's name
        self, device_id: int, func_code: int, address: int, values: list[int] | list[bool]
    ) -> ExcCodes | None:
        table = _TABLE_OF_FC[func_code]
        entries = self._cover(table, address, len(values), write=True)
        if entries is None:
            return ExcCodes.ILLEGAL_ADDRESS
        decoded: list[tuple[RegisterEntry, Value]] = []
        for entry in entries:
            offset = entry.address - address
            if entry.is_bit:
                value: Value = bool(values[offset])
            else:
                value = entry.from_registers(
                    [int(v) for v in values[offset : offset + entry.count]]
                )
            try:
                entry.check(value)
            except LimitError:
                return ExcCodes.ILLEGAL_VALUE
            decoded.append((entry, value))
        for entry, value in decoded:
            try:
                self._write(entry, value)
            except (ValueError, RuntimeError) as exc:
                _log.debug(
                    "Modbus emulator %s refused %s=%r: %s", self.map.name, entry.name, value, exc
                )
                return ExcCodes.ILLEGAL_VALUE
        self._echo = (func_code, address, list(values))
        return None

    # -- helpers ---------------------------------------------------------------------------

    def _cover(
        self, table: str, address: int, count: int, *, write: bool
    ) -> list[RegisterEntry] | None:
        """The entries covering ``address .. address+count-1`` (None → exception 2).

        Reads may start or end inside a 32-bit value; writes must cover whole values.
        """
        entries: list[RegisterEntry] = []
        end = address + count
        at = address
        while at < end:
            entry = self.map.entry_at(table, at)
            if entry is None or not (entry.writable if write else entry.readable):
                return None
            if write and (entry.address < address or entry.end > end):
                return None
            entries.append(entry)
            at = entry.end
        return entries

    def _device_identification(self, pdu: bytes) -> bytes:
        """Read Device Identification (43/14), spec §6.21."""
        if len(pdu) != 4:
            return exception_pdu(43, ExcCodes.ILLEGAL_VALUE)
        _, mei, read_code, object_id = pdu
        if mei != _MEI_DEVICE_ID:
            return exception_pdu(43, ExcCodes.ILLEGAL_FUNCTION)
        if not 1 <= read_code <= 4:
            return exception_pdu(43, ExcCodes.ILLEGAL_VALUE)
        objects = {
            key: text.encode("ascii", "replace")[: MAX_PDU - 9]
            for key, text in self._identity().items()
            if text
        }
        if read_code == 4:
            if object_id not in objects:
                return exception_pdu(43, ExcCodes.ILLEGAL_ADDRESS)
            ids = [object_id]
        else:
            category = {1: range(3), 2: range(7), 3: range(256)}
            ids = [i for i in category[read_code] if i in objects and not 0x07 <= i < 0x80]
            # An object id outside the category (or absent) restarts the stream at 0.
            if object_id in ids:
                ids = ids[ids.index(object_id) :]
        body = b""
        sent = 0
        more, next_id = 0x00, 0x00
        for key in ids:
            item = bytes((key, len(objects[key]))) + objects[key]
            if 7 + len(body) + len(item) > MAX_PDU:
                more, next_id = 0xFF, key
                break
            body += item
            sent += 1
        header = bytes((43, _MEI_DEVICE_ID, read_code, _CONFORMITY, more, next_id, sent))
        return header + body


# --------------------------------------------------------------------------- the slave


class ModbusSlaveProtocol(ProtocolHandler):
    """A Modbus slave as a protocol handler: RTU or MBAP request frames in, ADUs out.

    On a pty (a serial line) requests are RTU frames (:class:`RtuRequestFramer`: ended by
    t3.5 of silence, half duplex, so the slave ignores requests while it answers); on TCP
    they are MBAP (Modbus TCP) or RTU frames carried over TCP, per ``tcp_framing``. A
    request for another slave address is ignored; a broadcast (address 0) is carried out
    and never answered (Serial Line V1.02 §2.1). Modbus TCP accepts unit ids 0 and 0xFF
    ("the directly connected device") besides the slave's own, and answers any other with
    exception 0x0B (gateway target failed to respond).
    """

    #: A Modbus TCP device that drops off the network refuses connections until it is back.
    tcp_outage = "refuse"

    def __init__(self, datastore: ModbusDatastore, *, device_id: int, kind: str) -> None:
        self.datastore = datastore
        self.device_id = device_id
        self.device_name = kind
        #: Framing of the port being served: "rtu" or "mbap" (set by the emulator's start).
        self.framing: Literal["mbap", "rtu"] = "rtu"
        #: Requests served (frames for this slave, broadcasts included).
        self.requests = 0

    @property
    def tcp_scheme(self) -> str:  # type: ignore[override]
        return "tcp" if self.framing == "mbap" else "socket"

    def new_framer(self) -> RtuRequestFramer | MbapFramer:
        return MbapFramer() if self.framing == "mbap" else RtuRequestFramer()

    def addressed(self, frame: Any) -> bool:
        return not isinstance(frame, RtuFrame) or frame.device_id in (0, self.device_id)

    def answers(self, frame: Any) -> bool:
        return not isinstance(frame, RtuFrame) or frame.device_id != 0

    async def handle(self, frame: RtuFrame | MbapFrame) -> list[bytes]:
        self.requests += 1
        if isinstance(frame, MbapFrame):
            if frame.unit_id in (self.device_id, 0x00, 0xFF):
                response = await self.datastore.respond(frame.pdu)
            else:
                response = exception_pdu(frame.pdu[0], ExcCodes.GATEWAY_NO_RESPONSE)
            return [mbap_frame(frame.transaction_id, frame.unit_id, response)]
        if frame.known:
            pdu = await self.datastore.respond(frame.pdu)
        else:
            pdu = exception_pdu(frame.pdu[0], ExcCodes.ILLEGAL_FUNCTION)
        if frame.device_id == 0:
            return []
        return [rtu_frame(self.device_id, pdu)]


class _ModbusEmulator(SerialDeviceEmulator, abc.ABC, Generic[_Mechanism]):
    """Shared machinery of the Modbus emulators (see the module docstring).

    A subclass names its default map, its kind and the entries it can serve, and
    implements ``_read`` (current values of some entries, from one snapshot of its
    mechanism), ``_write`` (carry out one write; ValueError/RuntimeError refuses it) and
    ``_identity`` (Read Device Identification objects). The constructor is this one,
    with every option spelled out so that a bench loader can tell which a device takes.
    """

    default_map: ClassVar[str]
    kind: ClassVar[str]
    #: Entry names the emulator knows how to serve; a map with any other is refused.
    served_names: ClassVar[tuple[str, ...]]
    handler: ModbusSlaveProtocol

    def __init__(
        self,
        mechanism: _Mechanism,
        *,
        clock: Clock,
        faults: FaultPlan | None = None,
        pacing: Pacing | None = None,
        device_id: int | None = None,
        register_map: str | Path | RegisterMap | None = None,
        tcp_framing: Literal["mbap", "rtu"] = "mbap",
    ) -> None:
        self.mechanism: _Mechanism = mechanism
        self.clock = clock
        self.register_map = (
            register_map
            if isinstance(register_map, RegisterMap)
            else load_register_map(register_map or self.default_map)
        )
        self.device_id = self.register_map.device_id if device_id is None else device_id
        if not 1 <= self.device_id <= 247:
            raise ConfigurationError(
                f"device_id {self.device_id} is not a Modbus slave address: expected 1..247",
                field="device_id",
            )
        if tcp_framing not in ("mbap", "rtu"):
            raise ConfigurationError(
                f"tcp_framing {tcp_framing!r}: expected 'mbap' (Modbus TCP) or 'rtu'",
                field="tcp_framing",
            )
        self.tcp_framing = tcp_framing
        self.datastore = ModbusDatastore(
            self.register_map, read=self._read, write=self._write, identity=self._identity
        )
        self.started_s = 0.0
        self._check_names(self.served_names)
        self.handler = ModbusSlaveProtocol(self.datastore, device_id=self.device_id, kind=self.kind)
        self.server = EmulatorServer(self.handler, clock=clock, faults=faults, pacing=pacing)

    # -- hooks -----------------------------------------------------------------------------

    @abc.abstractmethod
    def _read(self, entries: list[RegisterEntry]) -> Mapping[str, Value]: ...

    @abc.abstractmethod
    def _write(self, entry: RegisterEntry, value: Value) -> None: ...

    @abc.abstractmethod
    def _identity(self) -> Mapping[int, str]: ...

    def _check_names(self, known: Iterable[str]) -> None:
        unknown = sorted(set(self.register_map.entries) - set(known))
        if unknown:
            raise ConfigurationError(
                f"the {self.kind} emulator cannot serve {', '.join(map(repr, unknown))}; "
                f"it knows {', '.join(sorted(known))}",
                source=self.register_map.source,
                field=f"registers.{unknown[0]}",
            )

    # -- counters ------------------------------------------------------------------------------

    @property
    def requests(self) -> int:
        """Requests served (for this slave, broadcasts included)."""
        return self.handler.requests

    @property
    def replies(self) -> int:
        """Replies sent (a dropped or disconnected one does not count)."""
        return self.server.replies

    @property
    def ignored(self) -> int:
        """Requests ignored because the slave was still answering the previous one."""
        return self.server.ignored

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> str:
        """What a client opens: the pty path, ``tcp://127.0.0.1:N`` or ``socket://...``."""
        if not self.server.started:
            raise RuntimeError(f"the {self.kind} emulator is not started; await start() first")
        return self.server.port

    async def start(self, *, tcp: tuple[str, int] | None = None) -> str:
        """Serve Modbus RTU on a new pty (default) or Modbus TCP on ``tcp=(host, port)``.

        ``host`` must be a loopback address (the emulator never listens on a network);
        port 0 picks a free one. Returns the port string a client opens.
        """
        if self.server.started:
            raise RuntimeError(f"the {self.kind} emulator already serves {self.server.port}")
        self.started_s = self.clock.now()
        self.handler.framing = "rtu" if tcp is None else self.tcp_framing
        return await super().start(tcp=tcp)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


# --------------------------------------------------------------------------- the pump


_STATE_LABEL: dict[PumpState, str] = {
    PumpState.STOPPED: "stopped",
    PumpState.INFUSING: "infusing",
    PumpState.PURGING: "infusing",  # the reference interface has no purge state
    PumpState.PAUSED: "paused",
    PumpState.WAITING: "paused",
    PumpState.ALARM: "alarm",
    PumpState.WITHDRAWING: "withdrawing",
}

_PUMP_GETTERS: dict[str, Callable[[PumpSnapshot], float]] = {
    "rate_setpoint_ml_h": lambda s: s.rate_setpoint_ml_h,
    "volume_to_be_infused_ml": lambda s: s.volume_target_ml or 0.0,
    "syringe_diameter_mm": lambda s: s.diameter_mm,
    "delivered_rate_ml_h": lambda s: s.rate_ml_h,
    "volume_infused_ml": lambda s: s.infused_ml,
    "line_pressure_mmhg": lambda s: s.pressure_mmhg,
}


class ModbusPumpEmulator(_ModbusEmulator[PumpMechanism]):
    """The reference infusion pump over Modbus, driving a :class:`PumpMechanism`.

    Parameters
    ----------
    mechanism : PumpMechanism
        The pump drive (``PhysicalBench.pump``).
    clock : Clock
        Shared time base; register reads are evaluated at ``clock.now()``.
    faults : FaultPlan, optional
        Reply faults (drop, late, garbage, bad-checksum, disconnect).
    pacing : Pacing, optional
        Wire-time pacing of RTU replies (bytes × bits/char ÷ baud + t3.5 gaps).
    device_id : int, optional
        Slave address 1..247 (default: the map's ``device_id``, 1 for the shipped map).
    register_map : str, Path or RegisterMap, optional
        Map to serve (default: the shipped ``infusion_pump``); entry names must be the
        reference names, addresses/types/word order may differ.
    tcp_framing : {"mbap", "rtu"}
        Framing on TCP: Modbus TCP (``tcp://``) or RTU over TCP (``socket://``).
    """

    default_map = "infusion_pump"
    kind = "pump"
    served_names = (*_PUMP_GETTERS, "state", "alarm_bits", "uptime_s", "command")

    def _read(self, entries: list[RegisterEntry]) -> Mapping[str, Value]:
        snap = self.mechanism.snapshot()
        out: dict[str, Value] = {}
        for entry in entries:
            name = entry.name
            getter = _PUMP_GETTERS.get(name)
            if getter is not None:
                out[name] = getter(snap)
            elif name == "state":
                out[name] = entry.code(_STATE_LABEL[snap.state])
            elif name == "alarm_bits":
                active = {alarm.value for alarm in snap.alarms}
                out[name] = sum(1 << bit for bit, label in entry.bits.items() if label in active)
            elif name == "uptime_s":
                out[name] = min(max(int(snap.uptime_s), 0), int(entry.maximum))
        return out

    def _write(self, entry: RegisterEntry, value: Value) -> None:
        pump = self.mechanism
        name = entry.name
        if name == "rate_setpoint_ml_h":
            pump.set_rate_ml_h(float(value))
        elif name == "volume_to_be_infused_ml":
            pump.set_volume_target_ml(float(value) if value > 0 else None)
        elif name == "syringe_diameter_mm":
            pump.set_diameter_mm(float(value))
        elif name == "command":
            command = entry.label(int(value))
            if command == "start":
                pump.start()
            elif command == "stop":
                pump.stop()
            elif command == "clear_alarms":
                pump.clear_alarms()
            elif command == "clear_volume":
                pump.clear_volume("both")
            else:
                raise ValueError(f"unknown command {value!r}")
        else:
            raise ValueError(f"{name!r} is not writable on the pump")

    def _identity(self) -> Mapping[int, str]:
        pump = self.mechanism
        return {
            0x00: self.register_map.vendor or "medtwin",
            0x01: pump.model,
            0x02: pump.firmware or self.register_map.revision,
            0x04: self.register_map.title,
            0x05: pump.model,
            0x80: pump.serial,
        }


# --------------------------------------------------------------------------- bench I/O


class ModbusBenchIOEmulator(_ModbusEmulator[BenchIOMechanism]):
    """The bench I/O module over Modbus, driving a :class:`BenchIOMechanism`.

    Same parameters as :class:`ModbusPumpEmulator`; the default map is the shipped
    ``bench_io``. The module's uptime counts from :meth:`start` (its power-up).
    """

    default_map = "bench_io"
    kind = "benchio"
    served_names = (
        "pinch_valve",
        "valve_closed_feedback",
        "line_pressure_mmhg",
        "status",
        "uptime_s",
    )

    def _read(self, entries: list[RegisterEntry]) -> Mapping[str, Value]:
        io = self.mechanism
        out: dict[str, Value] = {}
        pressure: float | None = None
        pressure_entry = self.register_map.entries.get("line_pressure_mmhg")
        for entry in entries:
            name = entry.name
            if name in ("pinch_valve", "valve_closed_feedback"):
                out[name] = io.occluded()
            elif name in ("line_pressure_mmhg", "status"):
                if pressure is None:
                    pressure = io.pressure_mmhg()
                low, high = (
                    (pressure_entry.minimum, pressure_entry.maximum)
                    if pressure_entry is not None
                    else (-math.inf, math.inf)
                )
                if name == "line_pressure_mmhg":
                    # The transducer's amplifier saturates at the ends of its range.
                    out[name] = min(max(pressure, low), high) if math.isfinite(pressure) else high
                else:
                    flags = set()
                    if not math.isfinite(pressure) or pressure > high:
                        flags.add("pressure_over_range")
                    if pressure < low:
                        flags.add("pressure_under_range")
                    out[name] = sum(1 << bit for bit, label in entry.bits.items() if label in flags)
            elif name == "uptime_s":
                uptime = int(self.clock.now() - self.started_s)
                out[name] = min(max(uptime, 0), int(entry.maximum))
        return out

    def _write(self, entry: RegisterEntry, value: Value) -> None:
        if entry.name != "pinch_valve":
            raise ValueError(f"{entry.name!r} is not writable on the bench I/O module")
        self.mechanism.set_occluded(bool(value))

    def _identity(self) -> Mapping[int, str]:
        io = self.mechanism
        return {
            0x00: self.register_map.vendor or "medtwin",
            0x01: io.model,
            0x02: self.register_map.revision,
            0x04: self.register_map.title,
            0x05: io.model,
            0x80: io.serial,
        }
