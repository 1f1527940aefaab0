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
The transport side is written here rather than taken from ``ModbusSerialServer`` /
``ModbusTcpServer`` because (1) the fault plan must act on each reply (drop it, delay it,
break its CRC, put garbage in front, drop the line), and pacing must hold each reply back
for its wire time plus the t3.5 gaps; (2) pymodbus's serial transport needs a device path
on both ends, so a pty would need a second pty and a relay; (3) pymodbus answers Read
Device Identification from one process-wide ``ModbusControlBlock``, so a pump and a bench
I/O module in one process would share an identity, and it answers an out-of-range
quantity with exception 1 where the specification says 3.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import errno
import ipaddress
import logging
import math
import os
import shutil
import struct
import tempfile
import tty
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, Self, TypeVar, cast

from medtwin.drivers.base import PumpState
from medtwin.drivers.clock import Clock
from medtwin.drivers.emulators.faults import Fault, FaultPlan
from medtwin.drivers.emulators.mechanisms import BenchIOMechanism, PumpMechanism, PumpSnapshot
from medtwin.drivers.emulators.serial_server import Pacing
from medtwin.drivers.errors import ConfigurationError, LimitError
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
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU

__all__ = [
    "ModbusBenchIOEmulator",
    "ModbusDatastore",
    "ModbusPumpEmulator",
    "RtuFrame",
    "RtuRequestFramer",
    "mbap_frame",
    "modbus_t35_s",
    "rtu_crc",
    "rtu_frame",
]

_log = logging.getLogger(__name__)

_Mechanism = TypeVar("_Mechanism", PumpMechanism, BenchIOMechanism)

#: Function codes the emulators implement.
SUPPORTED_FUNCTIONS: frozenset[int] = frozenset({1, 2, 3, 4, 5, 6, 15, 16, 22, 23, 43})
_MEI_DEVICE_ID = 0x0E
#: Conformity level 0x83: basic, regular and extended objects, stream and individual access.
_CONFORMITY = 0x83
_MAX_PDU = 253
_MAX_RTU_ADU = 256
_TABLE_OF_FC: dict[int, str] = {
    1: "coil", 5: "coil", 15: "coil",
    2: "discrete",
    3: "holding", 6: "holding", 16: "holding", 22: "holding", 23: "holding",
    4: "input",
}  # fmt: skip
#: Without pacing a pty moves bytes at once; a burst that forms no frame is dropped after
#: this much silence (the spec's t3.5 is far shorter, but an unpaced client may write a
#: frame in more than one system call).
_UNPACED_SILENCE_S = 0.02


# --------------------------------------------------------------------------- RTU framing


def rtu_crc(data: bytes) -> bytes:
    """The two CRC bytes of a Modbus RTU frame, in wire order (low byte first)."""
    return int(FramerRTU.compute_CRC(data)).to_bytes(2, "big")


def rtu_frame(device_id: int, pdu: bytes) -> bytes:
    """Address + PDU + CRC: one RTU ADU."""
    body = bytes((device_id,)) + pdu
    return body + rtu_crc(body)


def mbap_frame(transaction_id: int, unit_id: int, pdu: bytes) -> bytes:
    """MBAP header (transaction, protocol 0, length, unit) + PDU: one Modbus TCP ADU."""
    return struct.pack(">HHHB", transaction_id, 0, len(pdu) + 1, unit_id) + pdu


def modbus_t35_s(pacing: Pacing) -> float:
    """The RTU inter-frame silence t3.5 for ``pacing``'s line settings (seconds).

    3.5 character times, or ``pacing.interframe_chars`` if set; fixed at 1.75 ms above
    19200 baud (MODBUS over Serial Line V1.02, §2.5.1.1).
    """
    if pacing.baud > 19200:
        return 1.75e-3
    return (pacing.interframe_chars or 3.5) * pacing.byte_time_s()


@dataclass(frozen=True, slots=True)
class RtuFrame:
    """One RTU request with a good CRC: ``pdu`` is function code + data.

    ``known`` is False for a function code pymodbus cannot frame (answered with
    exception 1 once the line falls silent).
    """

    device_id: int
    pdu: bytes
    raw: bytes
    known: bool = True


class RtuRequestFramer:
    """Splits the byte stream a Modbus slave receives into RTU request frames (pure).

    A frame's length follows from its function code (pymodbus's request table); a frame
    whose CRC fails is discarded together with everything until the line falls silent,
    as a slave does with a corrupted frame (MODBUS over Serial Line V1.02, §2.5.1.1).
    Bytes that form no frame wait for :meth:`on_silence`, which also turns a burst with a
    good CRC but an unknown function code into a frame (to be refused with exception 1).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._discarding = False
        self._decoder = DecodePDU(True)
        #: Frames dropped for a bad CRC or as noise (the diagnostics "bus error" count).
        self.errors = 0

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[RtuFrame]:
        """Frames completed by ``data``, in order."""
        if self._discarding:
            return []
        self._buffer += data
        frames: list[RtuFrame] = []
        buffer = self._buffer
        while len(buffer) >= 4:
            size = self._frame_size(bytes(buffer))
            if size is None or size == 0 or len(buffer) < size:
                if len(buffer) > _MAX_RTU_ADU:
                    self._drop()
                break
            raw = bytes(buffer[:size])
            if rtu_crc(raw[:-2]) != raw[-2:]:
                self._drop()
                break
            del buffer[:size]
            frames.append(RtuFrame(raw[0], raw[1:-2], raw))
        return frames

    def on_silence(self) -> list[RtuFrame]:
        """The line went quiet: end the current burst."""
        burst = bytes(self._buffer)
        self._buffer.clear()
        self._discarding = False
        if len(burst) >= 4 and rtu_crc(burst[:-2]) == burst[-2:] and not burst[1] & 0x80:
            return [RtuFrame(burst[0], burst[1:-2], burst, known=False)]
        if burst:
            self.errors += 1
        return []

    def _drop(self) -> None:
        self._buffer.clear()
        self._discarding = True
        self.errors += 1

    def _frame_size(self, data: bytes) -> int | None:
        """Frame length (None: unknown function, 0: need more bytes)."""
        if data[1] & 0x80 or data[1] == 0:
            return None
        try:
            pdu_class = self._decoder.lookupPduClass(data)
            if pdu_class is None:
                return None
            return int(pdu_class.calculateRtuFrameSize(data))
        except Exception:  # pymodbus raises several kinds for odd frames
            return None


# --------------------------------------------------------------------------- the datastore


def _exception_pdu(function_code: int, code: int) -> bytes:
    return bytes(((function_code & 0x7F) | 0x80, code))


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
            return _exception_pdu(0, ExcCodes.ILLEGAL_FUNCTION)
        fc = pdu[0]
        if fc not in SUPPORTED_FUNCTIONS:
            return _exception_pdu(fc, ExcCodes.ILLEGAL_FUNCTION)
        if fc == 43:
            return self._device_identification(pdu)
        problem = _check_quantities(pdu)
        if problem is not None:
            return _exception_pdu(fc, problem)
        request = self._decoder.decode(pdu)
        if request is None or request.function_code != fc:
            return _exception_pdu(fc, ExcCodes.ILLEGAL_VALUE)
        self._echo = None
        try:
            # pymodbus types the datastore as ModbusServerContext; it only calls the two
            # coroutines below.
            response = await request.datastore_update(cast(Any, self), 0)
        except Exception:  # a fault in the physics must not take the port down
            _log.exception("Modbus emulator %s: request %s failed", self.map.name, pdu.hex())
            return _exception_pdu(fc, ExcCodes.DEVICE_FAILURE)
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
            return _exception_pdu(43, ExcCodes.ILLEGAL_VALUE)
        _, mei, read_code, object_id = pdu
        if mei != _MEI_DEVICE_ID:
            return _exception_pdu(43, ExcCodes.ILLEGAL_FUNCTION)
        if not 1 <= read_code <= 4:
            return _exception_pdu(43, ExcCodes.ILLEGAL_VALUE)
        objects = {
            key: text.encode("ascii", "replace")[: _MAX_PDU - 9]
            for key, text in self._identity().items()
            if text
        }
        if read_code == 4:
            if object_id not in objects:
                return _exception_pdu(43, ExcCodes.ILLEGAL_ADDRESS)
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
            if 7 + len(body) + len(item) > _MAX_PDU:
                more, next_id = 0xFF, key
                break
            body += item
            sent += 1
        header = bytes((43, _MEI_DEVICE_ID, read_code, _CONFORMITY, more, next_id, sent))
        return header + body


# --------------------------------------------------------------------------- transports


@dataclass
class _LineTiming:
    """Wire-time model of one RTU line (pacing)."""

    byte_s: float
    t35_s: float
    free_at: float = 0.0

    def schedule(self, arrived: float, request_len: int, reply_len: int | None) -> float:
        """When a reply of ``reply_len`` bytes has fully left the slave (loop time).

        The request is on the wire from when it arrived (or the line became free),
        the slave answers after t3.5 of silence, and the line is free again t3.5 after
        the reply (or after the request, when there is none).
        """
        start = max(arrived, self.free_at)
        request_end = start + request_len * self.byte_s
        if reply_len is None:
            self.free_at = request_end + self.t35_s
            return request_end
        reply_end = request_end + self.t35_s + reply_len * self.byte_s
        self.free_at = reply_end + self.t35_s
        return reply_end


class _PtyPort:
    """A pty whose slave side is published as a stable symlink; the master is ours."""

    def __init__(self, link: Path, on_data: Callable[[bytes], None]) -> None:
        self.link = link
        self._on_data = on_data
        self._master = -1
        self._slave = -1
        self._loop = asyncio.get_running_loop()

    @property
    def is_open(self) -> bool:
        return self._master >= 0

    def open(self) -> None:
        master, slave = os.openpty()
        try:
            # Raw mode: no echo, no CR/LF translation, no signals (pyserial does the same
            # when a master opens the port, but a reply may be written before that).
            tty.setraw(slave)
            os.set_blocking(master, False)
            # Keeping our own slave descriptor open means the master never sees EIO while
            # no client has the port open (between a test's clients, during a reconnect).
            tmp = self.link.with_name(self.link.name + ".new")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(os.ttyname(slave))
            tmp.replace(self.link)
        except BaseException:
            os.close(master)
            os.close(slave)
            raise
        self._master, self._slave = master, slave
        self._loop.add_reader(master, self._readable)

    def close(self) -> None:
        if self._master >= 0:
            self._loop.remove_reader(self._master)
            os.close(self._master)
            os.close(self._slave)
            self._master = self._slave = -1
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()

    def write(self, data: bytes) -> None:
        if self._master < 0:
            return
        # Nobody is reading the port and its buffer is full: the bytes are lost, as on a
        # line with no master listening.
        with contextlib.suppress(BlockingIOError):
            os.write(self._master, data)

    def _readable(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno == errno.EIO:
                return
            raise
        if data:
            self._on_data(data)


class _ModbusEmulator(abc.ABC, Generic[_Mechanism]):
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
        self.faults = faults
        self.pacing = pacing
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
        self._port = ""
        self._pty: _PtyPort | None = None
        self._pty_dir: Path | None = None
        self._framer = RtuRequestFramer()
        self._silence: asyncio.TimerHandle | None = None
        self._pty_queue: asyncio.Queue[tuple[RtuFrame, float]] | None = None
        self._pty_busy = False
        self._pty_timing: _LineTiming | None = None
        self._worker: asyncio.Task[None] | None = None
        self._server: asyncio.Server | None = None
        self._tcp_address: tuple[str, int] | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._connection_tasks: set[asyncio.Task[Any]] = set()
        self._restore: asyncio.Task[None] | None = None
        #: Requests received, replies sent, and requests ignored while the slave was busy.
        self.requests = 0
        self.replies = 0
        self.ignored = 0
        self._check_names(self.served_names)

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

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> str:
        """What a client opens: the pty path, ``tcp://127.0.0.1:N`` or ``socket://...``."""
        if not self._port:
            raise RuntimeError(f"the {self.kind} emulator is not started; await start() first")
        return self._port

    async def start(self, *, tcp: tuple[str, int] | None = None) -> str:
        """Serve Modbus RTU on a new pty (default) or Modbus TCP on ``tcp=(host, port)``.

        ``host`` must be a loopback address (the emulator never listens on a network);
        port 0 picks a free one. Returns the port string a client opens.
        """
        if self._port:
            raise RuntimeError(f"the {self.kind} emulator already serves {self._port}")
        self.started_s = self.clock.now()
        if tcp is None:
            self._pty_dir = Path(tempfile.mkdtemp(prefix="medtwin-modbus-"))
            self._pty_queue = asyncio.Queue()
            self._pty_timing = self._timing()
            self._pty = _PtyPort(self._pty_dir / f"tty{self.kind}", self._on_pty_data)
            try:
                self._pty.open()
            except OSError:
                shutil.rmtree(self._pty_dir, ignore_errors=True)
                self._pty = None
                raise
            self._worker = asyncio.create_task(self._pty_worker(), name=f"modbus {self.kind} pty")
            self._port = str(self._pty.link)
            return self._port
        host, number = tcp
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ConfigurationError(
                f"the emulator listens on loopback only; got host {host!r}, expected "
                "127.0.0.1, ::1 or localhost",
                field="tcp",
            )
        if host == "localhost":
            # One address: "localhost" may resolve to both ::1 and 127.0.0.1, and port 0
            # would then pick a different port on each.
            host = "127.0.0.1"
        self._server = await asyncio.start_server(self._on_client, host, number)
        sockname = self._server.sockets[0].getsockname()
        self._tcp_address = (host, int(sockname[1]))
        scheme = "tcp" if self.tcp_framing == "mbap" else "socket"
        shown = f"[{host}]" if ":" in host else host
        self._port = f"{scheme}://{shown}:{self._tcp_address[1]}"
        return self._port

    async def stop(self) -> None:
        """Stop serving and release the pty or socket; safe to call twice."""
        for task in (self._restore, self._worker):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._restore = self._worker = None
        self._close_pty()
        if self._pty_dir is not None:
            shutil.rmtree(self._pty_dir, ignore_errors=True)
            self._pty_dir = None
        await self._close_tcp()
        self._port = ""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- replies, faults and pacing ----------------------------------------------------------

    def _timing(self) -> _LineTiming | None:
        if self.pacing is None:
            return None
        return _LineTiming(self.pacing.byte_time_s(), modbus_t35_s(self.pacing))

    async def _deliver(
        self,
        reply: bytes | None,
        send: Callable[[bytes], None],
        *,
        rtu: bool,
        timing: _LineTiming | None = None,
        arrived: float = 0.0,
        request_len: int = 0,
    ) -> None:
        """Send one reply (None: a broadcast) through the fault plan and the pacing."""
        loop = asyncio.get_running_loop()
        plan = self.faults
        fault: Fault | None = None
        if reply is not None and plan is not None:
            fault = plan.reply_fault(self.clock.now())
            kind = fault.kind if fault is not None else None
            if kind == "drop":
                reply = None
            elif kind == "garbage":
                reply = plan.garbage() + reply
            elif kind == "bad-checksum":
                reply = _break_checksum(reply, rtu=rtu)
            elif kind == "disconnect" and fault is not None:
                self._disconnect(fault.delay_s)
                return
        if timing is not None:
            due = timing.schedule(arrived, request_len, None if reply is None else len(reply))
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        if fault is not None and fault.kind == "late":
            await asyncio.sleep(fault.delay_s)
        if reply is not None:
            send(reply)
            self.replies += 1

    def _disconnect(self, outage_s: float) -> None:
        """The port vanishes now and comes back after ``outage_s`` (wall) seconds."""
        if self._restore is not None and not self._restore.done():
            return
        if self._pty is not None:
            self._close_pty(keep=True)
        elif self._server is not None:
            self._server.close()
            for writer in list(self._connections):
                writer.close()
        self._restore = asyncio.create_task(self._come_back(outage_s), name="modbus reconnect")

    async def _come_back(self, outage_s: float) -> None:
        await asyncio.sleep(outage_s)
        try:
            if self._pty is not None:
                self._framer = RtuRequestFramer()
                self._pty_busy = False
                self._pty.open()
            elif self._tcp_address is not None:
                host, number = self._tcp_address
                self._server = await asyncio.start_server(self._on_client, host, number)
        except OSError:
            # Nobody awaits this task: say why the port stays away instead of failing
            # silently.
            _log.exception("Modbus %s emulator could not bring its port back", self.kind)

    # -- RTU on the pty ----------------------------------------------------------------------

    def _on_pty_data(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._dispatch_rtu(self._framer.feed(data), now)
        if self._silence is not None:
            self._silence.cancel()
            self._silence = None
        if self._framer.pending:
            timing = self._pty_timing
            quiet = max(timing.t35_s, _UNPACED_SILENCE_S) if timing else _UNPACED_SILENCE_S
            self._silence = loop.call_later(quiet, self._on_pty_silence)

    def _on_pty_silence(self) -> None:
        self._silence = None
        self._dispatch_rtu(self._framer.on_silence(), asyncio.get_running_loop().time())

    def _dispatch_rtu(self, frames: list[RtuFrame], arrived: float) -> None:
        assert self._pty_queue is not None
        for frame in frames:
            if frame.device_id not in (0, self.device_id):
                continue  # another slave on the line: stay silent
            if self._pty_busy:
                # A slave does not listen while it prepares or sends a reply.
                self.ignored += 1
                continue
            # A broadcast gets no reply, so the slave listens on while carrying it out.
            self._pty_busy = frame.device_id != 0
            self._pty_queue.put_nowait((frame, arrived))

    async def _pty_worker(self) -> None:
        assert self._pty_queue is not None
        assert self._pty is not None
        pty = self._pty
        while True:
            frame, arrived = await self._pty_queue.get()
            try:
                await self._serve_rtu(frame, pty.write, self._pty_timing, arrived)
            finally:
                if frame.device_id != 0:
                    self._pty_busy = False

    async def _serve_rtu(
        self,
        frame: RtuFrame,
        send: Callable[[bytes], None],
        timing: _LineTiming | None,
        arrived: float,
    ) -> None:
        self.requests += 1
        if frame.known:
            pdu = await self.datastore.respond(frame.pdu)
        else:
            pdu = _exception_pdu(frame.pdu[0], ExcCodes.ILLEGAL_FUNCTION)
        # Broadcast (address 0): carry out writes, never answer (Serial Line V1.02 §2.1).
        reply = None if frame.device_id == 0 else rtu_frame(self.device_id, pdu)
        if reply is None and timing is None:
            return
        await self._deliver(
            reply, send, rtu=True, timing=timing, arrived=arrived, request_len=len(frame.raw)
        )

    def _close_pty(self, *, keep: bool = False) -> None:
        if self._silence is not None:
            self._silence.cancel()
            self._silence = None
        if self._pty is not None:
            self._pty.close()
            if not keep:
                self._pty = None

    # -- TCP ---------------------------------------------------------------------------------

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connection_tasks.add(task)
        self._connections.add(writer)
        try:
            if self.tcp_framing == "mbap":
                await self._serve_mbap(reader, writer)
            else:
                await self._serve_rtu_stream(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # stop() cancels a connection stuck in a late or paced reply. The handler ends
            # normally: asyncio's stream callback would log a cancelled handler as an error.
            pass
        finally:
            self._connections.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()
            if task is not None:
                self._connection_tasks.discard(task)

    async def _serve_mbap(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while not writer.is_closing():
            header = await reader.readexactly(7)
            transaction, protocol, length, unit = struct.unpack(">HHHB", header)
            if protocol != 0 or not 2 <= length <= _MAX_PDU + 1:
                return  # not Modbus: a server drops such a connection
            pdu = await reader.readexactly(length - 1)
            self.requests += 1
            if unit in (self.device_id, 0x00, 0xFF):
                response = await self.datastore.respond(pdu)
            else:
                response = _exception_pdu(pdu[0], ExcCodes.GATEWAY_NO_RESPONSE)
            await self._deliver(mbap_frame(transaction, unit, response), writer.write, rtu=False)

    async def _serve_rtu_stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        framer = RtuRequestFramer()
        timing = self._timing()
        loop = asyncio.get_running_loop()
        while not writer.is_closing():
            try:
                async with asyncio.timeout(_UNPACED_SILENCE_S if framer.pending else None):
                    data = await reader.read(512)
            except TimeoutError:
                frames = framer.on_silence()
            else:
                if not data:
                    return
                frames = framer.feed(data)
            arrived = loop.time()
            for frame in frames:
                if frame.device_id in (0, self.device_id):
                    await self._serve_rtu(frame, writer.write, timing, arrived)

    async def _close_tcp(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._connections):
            writer.close()
        tasks = list(self._connection_tasks)
        if tasks:
            # Closed connections end their handlers; one still sleeping in a late or paced
            # reply is cancelled.
            _, stuck = await asyncio.wait(tasks, timeout=0.1)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self._connection_tasks.clear()
        self._connections.clear()
        self._tcp_address = None


def _break_checksum(reply: bytes, *, rtu: bool) -> bytes:
    if rtu:
        return reply[:-2] + bytes((reply[-2] ^ 0xFF,)) + reply[-1:]
    # Modbus TCP has no checksum of its own (TCP's catches corruption on the wire); a
    # broken protocol identifier is the corruption a conforming client must reject.
    return reply[:2] + b"\x00\x01" + reply[4:]


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
