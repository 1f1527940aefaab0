"""Modbus RTU / Modbus TCP drivers: any register map, the reference pump, the bench I/O module.

* :class:`ModbusRegisterDevice` (protocol ``"modbus"``): values by name from any
  register map (:mod:`medtwin.drivers.register_map`).
* :class:`ModbusInfusionPump` (protocol ``"modbus-pump"``): the reference infusion-pump
  interface (``drivers/register_maps/infusion_pump.toml``).
* :class:`ModbusBenchIO` (protocol ``"modbus-bench-io"``): pinch valve and inline
  transducer (``drivers/register_maps/bench_io.toml``).

Port strings (the only thing that differs between a real device and an emulator):

* a device path (``/dev/ttyUSB0``, ``/dev/serial/by-id/...``, an emulator's pty): Modbus
  RTU over a serial line, with ``baudrate``/``bytesize``/``parity``/``stopbits``;
* ``socket://HOST:PORT``: RTU framing over TCP (serial-to-Ethernet converters in raw mode);
* ``tcp://HOST:PORT``: Modbus TCP (MBAP header).

The Modbus transactions are pymodbus's asynchronous clients (``AsyncModbusSerialClient``,
``AsyncModbusTcpClient``); retries, timeouts and reconnects are left to
:meth:`medtwin.drivers.base.Device._call` (pymodbus's own retries are off), so every protocol fails
the same way: an exception response is :class:`ModbusExceptionReply` (a
:class:`~medtwin.drivers.errors.CommandRefused` naming the exception code), no reply is
:class:`~medtwin.drivers.errors.DeviceTimeout`, a lost port
:class:`~medtwin.drivers.errors.PortError`, a reply that does not match the request
:class:`~medtwin.drivers.errors.ProtocolError`. Values are checked against the register map
(min/max, access, enumerations) before anything is sent.

References: MODBUS Application Protocol Specification V1.1b3 (function codes 1-6, 15, 16,
43/14 and the exception codes of §7); MODBUS over Serial Line V1.02 (RTU, default 19200
baud, §2.5.1); MODBUS Messaging on TCP/IP Implementation Guide V1.0b.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from medtwin.drivers.base import (
    BenchIO,
    DeviceIdentity,
    InfusionPump,
    PumpAlarm,
    PumpLimits,
    PumpState,
    PumpStatus,
    RegisterDevice,
    RetryPolicy,
)
from medtwin.drivers.clock import Clock
from medtwin.drivers.errors import (
    CommandRefused,
    ConfigurationError,
    DeviceAlarm,
    DeviceTimeout,
    PortError,
    ProtocolError,
)
from medtwin.drivers.register_map import ReadBlock, RegisterMap, Value, load_register_map
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU

__all__ = [
    "EXCEPTION_CODES",
    "ModbusBenchIO",
    "ModbusExceptionReply",
    "ModbusInfusionPump",
    "ModbusLink",
    "ModbusRegisterDevice",
]

#: Modbus exception codes (Application Protocol V1.1b3 §7): name and what it usually means.
EXCEPTION_CODES: dict[int, tuple[str, str]] = {
    0x01: ("ILLEGAL FUNCTION", "the device does not implement this function code"),
    0x02: ("ILLEGAL DATA ADDRESS", "the device has no such address (check the register map)"),
    0x03: (
        "ILLEGAL DATA VALUE",
        "the device refused the value, or cannot do it in its present state",
    ),
    0x04: ("SERVER DEVICE FAILURE", "the device failed while carrying out the request"),
    0x05: ("ACKNOWLEDGE", "accepted; the device is still processing it"),
    0x06: ("SERVER DEVICE BUSY", "the device is busy; retry later"),
    0x08: ("MEMORY PARITY ERROR", "the device found a memory parity error"),
    0x0A: ("GATEWAY PATH UNAVAILABLE", "the gateway has no path to the device"),
    0x0B: (
        "GATEWAY TARGET DEVICE FAILED TO RESPOND",
        "the gateway got no answer from the device (check the device id)",
    ),
}

_RTU_BAUD_DEFAULT = 19200
Parity = Literal["N", "E", "O", "M", "S"]


class ModbusExceptionReply(CommandRefused):
    """The device answered with a Modbus exception response.

    ``exception_code`` is the code (1 illegal function, 2 illegal data address, 3 illegal
    data value, 4 device failure, ...); ``function_code`` the request's function code.
    """

    def __init__(
        self,
        message: str,
        *,
        device: str | None = None,
        reply: bytes = b"",
        exception_code: int = 0,
        function_code: int = 0,
    ) -> None:
        self.exception_code = exception_code
        self.function_code = function_code
        super().__init__(message, device=device, reply=reply)


def _parse_port(port: str) -> tuple[Literal["rtu", "socket", "tcp"], str, int]:
    """(kind, host or path, tcp port) for a port string."""
    if port.startswith(("tcp://", "socket://")):
        parts = urlsplit(port)
        try:
            number = parts.port
        except ValueError:
            number = None
        if not parts.hostname or number is None or not 0 < number < 65536 or parts.path:
            raise ConfigurationError(
                f"malformed port {port!r}: expected {parts.scheme}://HOST:PORT "
                "with PORT in 1..65535",
                field="port",
            )
        kind: Literal["socket", "tcp"] = "tcp" if parts.scheme == "tcp" else "socket"
        return kind, parts.hostname, number
    if not port.strip():
        raise ConfigurationError(
            "empty port: expected a device path, socket://HOST:PORT or tcp://HOST:PORT",
            field="port",
        )
    return "rtu", port, 0


class ModbusLink:
    """One Modbus master connection plus a register map: the shared part of the drivers.

    Parameters
    ----------
    port : str
        Device path, ``socket://HOST:PORT`` or ``tcp://HOST:PORT``.
    register_map : RegisterMap
        What the device holds where.
    device : str
        Device name used in errors.
    device_id : int
        Slave address (1..247 on serial lines; 0..255 on Modbus TCP, where 255 addresses
        the device itself).
    baudrate, bytesize, parity, stopbits
        Serial line settings (RTU on a device path only).
    timeout_s : float
        Reply timeout of one transaction, s.
    """

    def __init__(
        self,
        port: str,
        *,
        register_map: RegisterMap,
        device: str,
        device_id: int,
        baudrate: int = _RTU_BAUD_DEFAULT,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: int = 1,
        timeout_s: float = 1.0,
    ) -> None:
        self.port = port
        self.map = register_map
        self.device = device
        self.kind, self.host, self.tcp_port = _parse_port(port)
        top = 255 if self.kind == "tcp" else 247
        low = 0 if self.kind == "tcp" else 1
        if isinstance(device_id, bool) or not low <= device_id <= top:
            raise ConfigurationError(
                f"device_id {device_id!r} is not a Modbus address for {port}: expected "
                f"{low}..{top}",
                field="device_id",
            )
        if self.kind == "rtu" and (
            baudrate <= 0
            or bytesize not in (7, 8)
            or stopbits not in (1, 2)
            or parity not in ("N", "E", "O", "M", "S")
        ):
            raise ConfigurationError(
                f"serial settings {baudrate} {bytesize}{parity}{stopbits}: expected "
                "baudrate > 0, bytesize 7|8, parity N|E|O|M|S, stopbits 1|2",
                field="baudrate",
            )
        self.device_id = device_id
        self.baudrate = baudrate
        self.bytesize = bytesize
        self.parity = parity
        self.stopbits = stopbits
        self.timeout_s = timeout_s
        self._client: AsyncModbusSerialClient | AsyncModbusTcpClient | None = None
        self._last_rx = b""

    # -- connection --------------------------------------------------------------------------

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self._last_rx = bytes(data)
        return data

    async def open(self) -> None:
        """Connect. Raises PortError naming the device and the port."""
        # pymodbus's own retries and reconnects are off: drivers.base owns that policy. Its
        # timeout stays above the caller's so the caller's asyncio.timeout decides.
        common: dict[str, Any] = {
            "timeout": self.timeout_s + 1.0,
            "retries": 0,
            "reconnect_delay": 0,
            "trace_packet": self._trace_packet,
        }
        client: AsyncModbusSerialClient | AsyncModbusTcpClient
        if self.kind == "rtu":
            client = AsyncModbusSerialClient(
                self.host,
                framer=FramerType.RTU,
                baudrate=self.baudrate,
                bytesize=self.bytesize,
                parity=self.parity,
                stopbits=self.stopbits,
                **common,
            )
        else:
            client = AsyncModbusTcpClient(
                self.host,
                port=self.tcp_port,
                framer=FramerType.SOCKET if self.kind == "tcp" else FramerType.RTU,
                **common,
            )
        try:
            connected = await client.connect()
        except Exception as exc:  # pyserial/asyncio raise many kinds for a bad port
            client.close()
            raise PortError(f"cannot open {self.port}: {exc}", device=self.device) from exc
        if not connected:
            client.close()
            raise PortError(
                f"cannot open {self.port} (no such device, refused or busy); check the "
                "port string and that nothing else holds the port",
                device=self.device,
            )
        self._client = client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
            # Let asyncio finish closing the socket (it does so on the next loop turn).
            await asyncio.sleep(0)

    # -- transactions --------------------------------------------------------------------

    async def _exchange(
        self,
        request: str | ReadBlock,
        function_code: int,
        call: Callable[[AsyncModbusSerialClient | AsyncModbusTcpClient], Awaitable[ModbusPDU]],
    ) -> ModbusPDU:
        """One transaction, with pymodbus's outcomes mapped onto drivers.errors.

        ``request`` names the request in error messages (formatted only on error: this
        path runs for every read).
        """
        client = self._client
        if client is None or not client.connected:
            raise PortError(
                f"{_describe(request)}: {self.port} is not connected (closed or lost)",
                device=self.device,
            )
        try:
            response = await call(client)
        except ConnectionException as exc:
            raise PortError(
                f"{_describe(request)}: lost {self.port}: {exc}", device=self.device
            ) from exc
        except ModbusIOException as exc:
            if not client.connected:
                raise PortError(
                    f"{_describe(request)}: lost {self.port}", device=self.device
                ) from exc
            if "No response" in str(exc):
                raise DeviceTimeout(
                    f"{_describe(request)}: no reply from device {self.device_id} on {self.port}",
                    device=self.device,
                ) from exc
            raise ProtocolError(
                f"{_describe(request)}: {exc}", raw=self._last_rx, device=self.device
            ) from exc
        except ModbusException as exc:
            raise ProtocolError(
                f"{_describe(request)}: {exc}", raw=self._last_rx, device=self.device
            ) from exc
        if response.isError():
            code = int(getattr(response, "exception_code", 0))
            name, meaning = EXCEPTION_CODES.get(code, ("UNKNOWN EXCEPTION", "not in the spec"))
            raise ModbusExceptionReply(
                f"{_describe(request)} refused with Modbus exception {code} ({name}): {meaning}",
                device=self.device,
                reply=self._last_rx,
                exception_code=code,
                function_code=function_code,
            )
        if response.function_code != function_code:
            raise ProtocolError(
                f"{_describe(request)}: reply has function code {response.function_code}, expected "
                f"{function_code} (a stale reply from an earlier request?)",
                raw=self._last_rx,
                device=self.device,
            )
        return response

    async def read_block(self, block: ReadBlock) -> dict[str, Value]:
        """Read one planned block and decode its entries."""
        address, count, unit = block.address, block.count, self.device_id
        table = block.table
        if table == "holding":
            response = await self._exchange(
                block, 3, lambda c: c.read_holding_registers(address, count=count, device_id=unit)
            )
            return block.decode(response.registers, device=self.device)
        if table == "input":
            response = await self._exchange(
                block, 4, lambda c: c.read_input_registers(address, count=count, device_id=unit)
            )
            return block.decode(response.registers, device=self.device)
        if table == "coil":
            response = await self._exchange(
                block, 1, lambda c: c.read_coils(address, count=count, device_id=unit)
            )
        else:
            response = await self._exchange(
                block, 2, lambda c: c.read_discrete_inputs(address, count=count, device_id=unit)
            )
        return block.decode(response.bits, device=self.device)

    async def read_values(self, names: tuple[str, ...]) -> dict[str, Value]:
        """Values of ``names`` in the fewest reads the map allows."""
        blocks = self.map.plan_reads(names, device=self.device)
        if len(blocks) == 1:
            return await self.read_block(blocks[0])
        values: dict[str, Value] = {}
        for block in blocks:
            values.update(await self.read_block(block))
        return values

    async def write_value(self, name: str, value: Value) -> None:
        """Write one value; refused (LimitError) before sending if the map forbids it."""
        encoded = self.map.encode(name, value, device=self.device)
        entry = self.map.entries[name]
        address, unit = entry.address, self.device_id
        what = f"write {name}={value!r}"
        if isinstance(encoded, bool):
            bit = encoded
            await self._exchange(what, 5, lambda c: c.write_coil(address, bit, device_id=unit))
        elif len(encoded) == 1:
            word = encoded[0]
            await self._exchange(what, 6, lambda c: c.write_register(address, word, device_id=unit))
        else:
            words = list(encoded)
            await self._exchange(
                what, 16, lambda c: c.write_registers(address, words, device_id=unit)
            )

    async def _read_identification(self, object_id: int) -> ModbusPDU:
        unit = self.device_id
        return await self._exchange(
            "read device identification",
            43,
            lambda c: c.read_device_information(read_code=3, object_id=object_id, device_id=unit),
        )

    async def identify(self, protocol: str) -> DeviceIdentity:
        """Read Device Identification (43/14), or the map's declared identity without it."""
        objects: dict[int, bytes] = {}
        object_id = 0
        address = f"{self.port}#{self.device_id}"
        try:
            # Extended category: a device that conforms to a lower level answers with what
            # it has (Application Protocol V1.1b3 §6.21).
            for _ in range(16):
                response = await self._read_identification(object_id)
                for key, data in getattr(response, "information", {}).items():
                    objects[int(key)] = data[0] if isinstance(data, list) else data
                if getattr(response, "more_follows", 0) != 0xFF:
                    break
                next_id = int(getattr(response, "next_object_id", 0))
                if next_id <= object_id:
                    break
                object_id = next_id
        except ModbusExceptionReply as exc:
            if exc.exception_code not in (1, 2, 3):
                raise
            return DeviceIdentity(
                protocol=protocol,
                model=self.map.product_code or self.map.name,
                firmware=self.map.revision,
                address=address,
            )

        def text(key: int) -> str:
            raw = objects.get(key, b"")
            return raw.decode("ascii", "replace").strip("\x00 ") if isinstance(raw, bytes) else ""

        return DeviceIdentity(
            protocol=protocol,
            model=text(0x05) or text(0x01) or self.map.product_code or self.map.name,
            serial=text(0x80),
            firmware=text(0x02),
            address=address,
        )


def _describe(request: str | ReadBlock) -> str:
    if isinstance(request, str):
        return request
    last = request.address + request.count - 1
    return f"read {request.table} {request.address}..{last}"


def _map_from(register_map: str | Path | RegisterMap) -> RegisterMap:
    return (
        register_map if isinstance(register_map, RegisterMap) else load_register_map(register_map)
    )


def _require(register_map: RegisterMap, names: dict[str, str], driver: str) -> None:
    """Each name must exist with the access given ('r', 'w' or 'rw' needed)."""
    for name, needed in names.items():
        entry = register_map.entries.get(name)
        if entry is None:
            raise ConfigurationError(
                f"the {driver} driver needs an entry {name!r} in the register map",
                source=register_map.source,
                field=f"registers.{name}",
            )
        if any(flag not in entry.access for flag in needed):
            raise ConfigurationError(
                f"the {driver} driver needs {name!r} with access {needed!r}, the map says "
                f"{entry.access!r}",
                source=register_map.source,
                field=f"registers.{name}.access",
            )


class _ModbusDriver:
    """Lifecycle and identity shared by the Modbus drivers (mixed in before the interface)."""

    protocol: ClassVar[str]
    _link: ModbusLink

    @property
    def register_map(self) -> RegisterMap:
        return self._link.map

    @property
    def device_id(self) -> int:
        return self._link.device_id

    async def _open(self) -> None:
        await self._link.open()

    async def _close(self) -> None:
        await self._link.close()

    async def _identify(self) -> DeviceIdentity:
        return await self._link.identify(self.protocol)

    async def _read_values(self, names: tuple[str, ...]) -> dict[str, float | int | bool]:
        return await self._link.read_values(names)

    async def _write_value(self, name: str, value: float | int | bool) -> None:
        await self._link.write_value(name, value)


def _make_link(
    port: str,
    name: str,
    retry: RetryPolicy,
    register_map: RegisterMap,
    device_id: int | None,
    serial: tuple[int, int, str, int],
) -> ModbusLink:
    baudrate, bytesize, parity, stopbits = serial
    return ModbusLink(
        port,
        register_map=register_map,
        device=name,
        device_id=register_map.device_id if device_id is None else device_id,
        baudrate=baudrate,
        bytesize=bytesize,
        parity=parity,
        stopbits=stopbits,
        timeout_s=retry.timeout_s,
    )


class ModbusRegisterDevice(_ModbusDriver, RegisterDevice):
    """Any Modbus device, by register map: ``read_values(*names)``, ``write_value(name, v)``.

    Parameters
    ----------
    port : str
        Device path (RTU), ``socket://HOST:PORT`` (RTU over TCP) or ``tcp://HOST:PORT``.
    register_map : str, Path or RegisterMap
        A shipped map's name or a TOML file.
    device_id : int, optional
        Slave address (default: the map's ``device_id``).
    baudrate, bytesize, parity, stopbits
        Serial line settings for a device path. Default 19200 baud 8N1: the serial-line
        spec's default is 8E1, but most pumps and I/O modules ship 8N1 and Linux ptys
        (emulators) refuse parity; set ``parity="E"`` for a device that follows the spec.
    name, clock, retry
        See :class:`medtwin.drivers.base.Device`.
    """

    protocol = "modbus"

    def __init__(
        self,
        port: str,
        *,
        register_map: str | Path | RegisterMap,
        device_id: int | None = None,
        baudrate: int = _RTU_BAUD_DEFAULT,
        bytesize: int = 8,
        parity: Parity = "N",
        stopbits: int = 1,
        name: str | None = None,
        clock: Clock | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(port, name=name, clock=clock, retry=retry)
        self._link = _make_link(
            port,
            self.name,
            self.retry,
            _map_from(register_map),
            device_id,
            (baudrate, bytesize, parity, stopbits),
        )


class ModbusBenchIO(_ModbusDriver, BenchIO):
    """The bench I/O module: ``set_occluded``, ``read_status`` and values by name.

    Parameters as :class:`ModbusRegisterDevice`; the default map is the shipped
    ``bench_io``. Any map with a writable coil ``pinch_valve`` and a readable
    ``line_pressure_mmhg`` works.
    """

    protocol = "modbus-bench-io"

    def __init__(
        self,
        port: str,
        *,
        register_map: str | Path | RegisterMap = "bench_io",
        device_id: int | None = None,
        baudrate: int = _RTU_BAUD_DEFAULT,
        bytesize: int = 8,
        parity: Parity = "N",
        stopbits: int = 1,
        name: str | None = None,
        clock: Clock | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(port, name=name, clock=clock, retry=retry)
        loaded = _map_from(register_map)
        _require(loaded, {"pinch_valve": "rw", "line_pressure_mmhg": "r"}, "modbus-bench-io")
        if loaded.entries["pinch_valve"].table != "coil":
            raise ConfigurationError(
                "the modbus-bench-io driver drives the pinch valve through a coil",
                source=loaded.source,
                field="registers.pinch_valve.table",
            )
        self._link = _make_link(
            port, self.name, self.retry, loaded, device_id, (baudrate, bytesize, parity, stopbits)
        )


_PUMP_NEEDS = {
    "rate_setpoint_ml_h": "w",
    "volume_to_be_infused_ml": "w",
    "command": "w",
    "syringe_diameter_mm": "w",
    "state": "r",
    "alarm_bits": "r",
}
_PUMP_OPTIONAL_STATUS = ("delivered_rate_ml_h", "volume_infused_ml", "line_pressure_mmhg")
_PUMP_COMMANDS = ("start", "stop", "clear_alarms", "clear_volume")


class ModbusInfusionPump(_ModbusDriver, InfusionPump):
    """An infusion pump that serves the reference Modbus interface.

    Parameters
    ----------
    port : str
        Device path (RTU), ``socket://HOST:PORT`` (RTU over TCP) or ``tcp://HOST:PORT``.
    register_map : str, Path or RegisterMap
        Default: the shipped ``infusion_pump`` map. A variant (other addresses, CDAB word
        order, extra entries) works as long as it keeps the reference names and labels.
    device_id : int, optional
        Slave address (default: the map's ``device_id``, 1 for the shipped map).
    baudrate, bytesize, parity, stopbits
        Serial line settings for a device path (default 19200 8N1; see
        :class:`ModbusRegisterDevice`).
    limits : PumpLimits, optional
        Declared limits checked before sending (in addition to the map's min/max).
    name, clock, retry
        See :class:`medtwin.drivers.base.Device`.

    Notes
    -----
    ``start()`` refused with exception 3 while the pump reports an alarm raises
    :class:`~medtwin.drivers.errors.DeviceAlarm` naming the alarms (clear them first).
    """

    protocol = "modbus-pump"

    def __init__(
        self,
        port: str,
        *,
        register_map: str | Path | RegisterMap = "infusion_pump",
        device_id: int | None = None,
        baudrate: int = _RTU_BAUD_DEFAULT,
        bytesize: int = 8,
        parity: Parity = "N",
        stopbits: int = 1,
        limits: PumpLimits | None = None,
        name: str | None = None,
        clock: Clock | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(port, limits=limits, name=name, clock=clock, retry=retry)
        loaded = _map_from(register_map)
        _require(loaded, _PUMP_NEEDS, "modbus-pump")
        self._state = loaded.entries["state"]
        self._alarm_bits = loaded.entries["alarm_bits"]
        self._command_entry = loaded.entries["command"]
        self._check_labels(loaded)
        self._status_names = (
            "state",
            "alarm_bits",
            *(
                n
                for n in _PUMP_OPTIONAL_STATUS
                if n in loaded.entries and loaded.entries[n].readable
            ),
        )
        self._link = _make_link(
            port, self.name, self.retry, loaded, device_id, (baudrate, bytesize, parity, stopbits)
        )

    def _check_labels(self, loaded: RegisterMap) -> None:
        states = {s.value for s in PumpState}
        alarms = {a.value for a in PumpAlarm}
        problems = (
            [
                (
                    f"registers.state.values.{code}",
                    f"{label!r} is not a pump state ({', '.join(sorted(states))})",
                )
                for code, label in self._state.values.items()
                if label not in states
            ]
            + [
                (
                    f"registers.alarm_bits.bits.{bit}",
                    f"{label!r} is not a pump alarm ({', '.join(sorted(alarms))})",
                )
                for bit, label in self._alarm_bits.bits.items()
                if label not in alarms
            ]
            + [
                ("registers.command.values", f"no command labelled {label!r}")
                for label in _PUMP_COMMANDS
                if label not in self._command_entry.values.values()
            ]
        )
        if not self._state.values:
            problems.append(("registers.state.values", "the state register needs its values"))
        if problems:
            field, message = problems[0]
            raise ConfigurationError(message, source=loaded.source, field=field)

    async def read_values(self, *names: str) -> dict[str, Value]:
        """Any readable values of the pump's map by name (``uptime_s``, setpoints...)."""
        return await self._call("read_values", lambda: self._link.read_values(names))

    # -- InfusionPump backend hooks ------------------------------------------------------

    async def _set_diameter(self, diameter_mm: float) -> None:
        await self._link.write_value("syringe_diameter_mm", diameter_mm)

    async def _read_diameter(self) -> float:
        values = await self._link.read_values(("syringe_diameter_mm",))
        return float(values["syringe_diameter_mm"])

    async def _set_rate(self, rate_ml_h: float) -> None:
        await self._link.write_value("rate_setpoint_ml_h", rate_ml_h)

    async def _set_volume_target(self, volume_ml: float | None) -> None:
        await self._link.write_value("volume_to_be_infused_ml", volume_ml or 0.0)

    async def _start(self) -> None:
        await self._command("start")

    async def _stop(self) -> None:
        await self._command("stop")

    async def _clear_alarms(self) -> None:
        await self._command("clear_alarms")

    async def _clear_volume(self) -> None:
        await self._command("clear_volume")

    async def _command(self, label: str) -> None:
        try:
            await self._link.write_value("command", self._command_entry.code(label))
        except ModbusExceptionReply as exc:
            if label != "start" or exc.exception_code != 3:
                raise
            status = await self._status_reading()
            if status.state is not PumpState.ALARM and not status.alarms:
                raise
            active = ", ".join(sorted(a.value for a in status.alarms)) or "unspecified"
            raise DeviceAlarm(
                f"start refused: the pump is in alarm ({active}); call clear_alarms() first",
                device=self.name,
                alarm=active,
            ) from exc

    async def _status_reading(self) -> PumpStatus:
        values = await self._link.read_values(self._status_names)
        t_s = self.clock.now()
        raw_state = int(values["state"])
        label = self._state.label(raw_state)
        if label is None:
            raise ProtocolError(
                f"state register holds {raw_state}, which the map does not define "
                f"({', '.join(f'{k}={v}' for k, v in self._state.values.items())})",
                raw=raw_state.to_bytes(2, "big"),
                device=self.name,
            )
        alarms = frozenset(
            PumpAlarm(flag) for flag in self._alarm_bits.flags(int(values["alarm_bits"]))
        )
        return PumpStatus(
            t_s=t_s,
            state=PumpState(label),
            alarms=alarms,
            rate_ml_h=_optional_float(values.get("delivered_rate_ml_h")),
            infused_ml=_optional_float(values.get("volume_infused_ml")),
            pressure_mmhg=_optional_float(values.get("line_pressure_mmhg")),
        )


def _optional_float(value: Value | None) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None
