"""``medtwin emulate``: emulated devices on ptys or TCP, for any program to talk to.

::

    medtwin emulate pump --protocol ne1000|modbus|<any registered pump protocol>
    medtwin emulate balance --protocol mt-sics
    medtwin emulate bench-io --protocol modbus
    medtwin emulate monitor --protocol masimo|nonin2|nonin7|nonin8 [--hr BPM --spo2 PCT]
    medtwin emulate simulator --protocol prosim8
    medtwin emulate bench            # pump + balance + bench I/O on one physical line
    medtwin emulate bench BENCH.toml # every device of that bench with port = "emulated"

``--protocol`` takes any protocol registered for that device kind with an emulator (a
plug-in's as well as medtwin's own, see ``medtwin protocols``); ``modbus`` is short for
``modbus-pump`` / ``modbus-bench-io``. Each device is served by the emulator its protocol's
descriptor names (:mod:`medtwin.drivers.registry`), in front of one
:class:`~medtwin.drivers.emulators.physical_bench.PhysicalBench` on the wall clock: the pump
moves the plunger, the line builds pressure while the pinch valve is closed, the balance
weighs what the line delivers. The emulator prints which port to open (a pty path by
default; ``--tcp HOST:PORT`` listens on 127.0.0.1 only) and serves until SIGINT or
SIGTERM, then exits 0.

A ``monitor`` is any protocol of kind ``oximeter``: the bench's shared patient
(:class:`~medtwin.drivers.emulators.patient_world.PatientWorld`) seen through the monitor
model of the protocol's vendor preset (:func:`medtwin.hil.monitor_twin.default_preset`);
``--hr``/``--spo2`` set the patient as a simulator would. A ``simulator`` is any protocol
of kind ``simulator`` (the ProSim 8), driving that same patient.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from typing import Any

import click
from medtwin.drivers.clock import WallClock
from medtwin.drivers.emulators.faults import FaultPlan
from medtwin.drivers.emulators.physical_bench import PhysicalBench
from medtwin.drivers.emulators.serial_server import Pacing
from medtwin.drivers.errors import ConfigurationError
from medtwin.drivers.registry import descriptor, emulator_class, protocols
from medtwin.hil.cli import handle_errors, parse_assignments

#: device → {short --protocol value → registry protocol}; any registry name works too.
PROTOCOL_ALIASES: dict[str, dict[str, str]] = {
    "pump": {"modbus": "modbus-pump"},
    "balance": {},
    "bench-io": {"modbus": "modbus-bench-io"},
    "monitor": {},
    "simulator": {},
}
#: device (the subcommand) → the descriptor ``kind`` its protocols have
DEVICE_KINDS: dict[str, str] = {"monitor": "oximeter"}
#: device → --protocol when none is given (otherwise: the only protocol of that kind)
DEFAULT_PROTOCOL: dict[str, str] = {"pump": "modbus", "balance": "mt-sics", "bench-io": "modbus"}
#: what ``medtwin emulate bench`` serves, in port order
BENCH_DEVICES: tuple[tuple[str, str], ...] = (
    ("pump", "ne1000"),
    ("balance", "mt-sics"),
    ("bench-io", "modbus-bench-io"),
)
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def _tcp(value: str | None) -> tuple[str, int] | None:
    if value is None:
        return None
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ConfigurationError(f"expected HOST:PORT, got {value!r}", source="--tcp")
    if host not in LOCAL_HOSTS:
        raise ConfigurationError(
            f"emulators listen on 127.0.0.1 only, not {host!r}", source="--tcp"
        )
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigurationError(f"port {port_text!r} is not a number", source="--tcp") from None
    if not 0 <= port <= 65535:
        raise ConfigurationError(f"port {port} is outside 0–65535", source="--tcp")
    return "127.0.0.1", port


async def _serve(
    devices: list[tuple[str, str]],
    *,
    pump_kind: str,
    overrides: dict[str, str],
    faults: list[str],
    seed: int,
    tcp: tuple[str, int] | None,
    baud: int | None,
    pace: bool,
    as_json: bool,
    patient: dict[str, float] | None = None,
) -> None:
    clock = WallClock()
    plan_specs = FaultPlan.parse(faults, seed=seed)
    bench = PhysicalBench.default(
        pump=pump_kind,  # type: ignore[arg-type]
        clock=clock,
        seed=seed,
        overrides=overrides,
        device_faults=plan_specs.device_faults(),
    )
    pacing = Pacing(baud=baud) if pace and baud else None
    if patient:
        try:
            if "hr" in patient:
                bench.simulator.set_heart_rate_bpm(patient["hr"])
            if "spo2" in patient:
                bench.simulator.set_spo2_percent(patient["spo2"])
        except ValueError as exc:
            raise ConfigurationError(str(exc), source="--hr/--spo2") from None
    emulators: list[Any] = []
    served: list[dict[str, str]] = []
    # Handlers first: a client that signals as soon as it reads the port line (or while the
    # ports open) must still get a clean stop, never the default action of the signal.
    stop = _stop_on_signals()
    try:
        for index, (device, protocol) in enumerate(devices):
            mechanism = _mechanism(bench, protocol)
            # each device gets its own fault plan (same specs, same seed) so that one
            # device's traffic does not change when another misbehaves
            plan = FaultPlan.parse(faults, seed=seed)
            emulator = emulator_class(protocol)(mechanism, clock=clock, faults=plan, pacing=pacing)
            emulators.append(emulator)
            where = None if tcp is None else (tcp[0], tcp[1] + index if tcp[1] else 0)
            port = await emulator.start(tcp=where)
            served.append({"port": str(port), "protocol": protocol, "device": device})
        doc: dict[str, Any] = served[0] if len(served) == 1 else {"devices": served}
        await _announce_and_wait(served, doc if as_json else None, stop)
    finally:
        await _stop_all(emulators)


#: The model an emulated oximeter reports, by monitor preset (illustrative names).
_OXIMETER_MODEL = {"masimo": "Rad-8", "nonin": "3150", "generic": "oximeter"}


def _mechanism(bench: PhysicalBench, protocol: str) -> Any:
    name = descriptor(protocol).mechanism
    if name == "oximeter":
        from medtwin.device_models.monitor.params import monitor_preset
        from medtwin.hil.monitor_twin import default_preset

        preset = default_preset(protocol)
        return bench.patient.oximeter(
            monitor_preset(preset),
            model=_OXIMETER_MODEL.get(preset, preset),
            serial=f"{bench.seed:010d}",
        )
    mechanism = getattr(bench, name, None) if name else None
    if mechanism is None:
        raise ConfigurationError(
            f"protocol {protocol!r} ({descriptor(protocol).source}) names mechanism {name!r}, "
            "which the physical bench does not have; expected pump, balance, bench_io, "
            "oximeter or simulator",
            source="--protocol",
        )
    return mechanism


def _protocol(device: str, value: str | None) -> str:
    """The registry protocol ``--protocol value`` names for ``device``; click's usage error
    (exit 2, "Invalid value for '--protocol'") when there is none."""
    if value is None:
        choices = _choices(device)
        if len(choices) != 1:
            raise click.BadParameter(
                f"name the {device} protocol; expected one of {', '.join(choices) or '(none)'}"
            )
        value = choices[0]
    name = PROTOCOL_ALIASES[device].get(value, value)
    if name not in protocols():
        raise click.BadParameter(
            f"unknown protocol {value!r} for a {device}; expected one of "
            f"{', '.join(_choices(device))}"
        )
    try:
        found = descriptor(name)
    except ConfigurationError as exc:  # a broken plug-in: its error names the distribution
        raise click.BadParameter(str(exc).removeprefix("protocol: ")) from None
    if found.kind != DEVICE_KINDS.get(device, device):
        raise click.BadParameter(
            f"protocol {name!r} drives a {found.kind or 'generic device'}, not a {device}; "
            f"expected one of {', '.join(_choices(device))}"
        )
    if found.emulator is None:
        raise click.BadParameter(f"protocol {name!r} has no emulator")
    return name


def _choices(device: str) -> list[str]:
    """The --protocol values of ``device``: its aliases and every protocol of its kind with an
    emulator (a broken plug-in is left out here; naming it gives its error)."""
    names = set(PROTOCOL_ALIASES[device])
    for name in protocols():
        with contextlib.suppress(ConfigurationError):
            found = descriptor(name)
            if found.kind == DEVICE_KINDS.get(device, device) and found.emulator is not None:
                names.add(name)
    return sorted(names)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def _announce_and_wait(
    served: list[dict[str, str]], doc: dict[str, Any] | None, stop: asyncio.Event
) -> None:
    """Print where each device is served (``doc`` as one JSON line, or a line per device
    when None), then serve until ``stop`` is set."""
    if doc is not None:
        click.echo(json.dumps(doc), nl=True)
    else:
        for entry in served:
            click.echo(f"emulated {entry['device']} ({entry['protocol']}): open {entry['port']}")
        click.echo("serving until Ctrl-C / SIGTERM")
    await stop.wait()


async def _stop_all(emulators: list[Any]) -> None:
    """Stop every emulator started (the last first), then give the signals back."""
    for emulator in reversed(emulators):
        with contextlib.suppress(Exception):
            await emulator.stop()
    loop = asyncio.get_running_loop()
    for sig in _STOP_SIGNALS:
        loop.remove_signal_handler(sig)


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (handlers on the running loop, also when the shell
    started us with SIGINT ignored, as it does for a background job)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    return stop


def _options(func: Any) -> Any:
    for decorator in reversed(
        [
            click.option("--pty", "use_pty", is_flag=True, help="serve on a pty (the default)"),
            click.option(
                "--tcp", default=None, metavar="HOST:PORT", help="serve on TCP (127.0.0.1 only)"
            ),
            click.option(
                "--pump-kind",
                type=click.Choice(["syringe", "volumetric"]),
                default="syringe",
                show_default=True,
                help="physics behind the pump",
            ),
            click.option(
                "--set",
                "sets",
                multiple=True,
                metavar="NAME=VALUE",
                help="truth parameter override",
            ),
            click.option(
                "--fault",
                "faults",
                multiple=True,
                metavar="SPEC",
                help="fault plan entry, e.g. drop:p=0.1",
            ),
            click.option(
                "--seed", type=int, default=0, show_default=True, help="seed of noise and faults"
            ),
            click.option("--baud", type=int, default=None, help="line speed for --pace"),
            click.option("--pace", is_flag=True, help="pace bytes at --baud (wire time)"),
            click.option(
                "--json", "as_json", is_flag=True, help="print the port(s) as one JSON line"
            ),
        ]
    ):
        func = decorator(func)
    return func


@click.group("emulate")
def emulate() -> None:
    """Serve emulated devices on ptys or TCP until Ctrl-C."""


def _run(devices: list[tuple[str, str]], **kwargs: Any) -> None:
    patient = {k: kwargs.pop(k) for k in ("hr", "spo2") if kwargs.get(k) is not None}
    kwargs.pop("hr", None)
    kwargs.pop("spo2", None)
    if patient:
        kwargs["patient"] = patient
    if kwargs.pop("use_pty") and kwargs.get("tcp"):
        raise ConfigurationError("choose --pty or --tcp, not both", source="--tcp")
    if kwargs["pace"] and not kwargs["baud"]:
        raise ConfigurationError("--pace needs --baud N", source="--pace")
    kwargs["tcp"] = _tcp(kwargs["tcp"])
    kwargs["overrides"] = parse_assignments(kwargs.pop("sets"))
    kwargs["faults"] = list(kwargs["faults"])
    kwargs["pump_kind"] = kwargs.pop("pump_kind")
    asyncio.run(_serve(devices, **kwargs))


def _device_command(device: str) -> click.Command:
    @click.command(
        device,
        help=f"Emulate a {device} (--protocol: any {device} protocol with an emulator, "
        "see `medtwin protocols`).",
    )
    @click.option(
        "--protocol",
        default=DEFAULT_PROTOCOL.get(device),
        show_default=True,
        metavar="NAME",
        help=f"e.g. {', '.join(_choices(device)) or '(none registered)'}",
        callback=lambda _ctx, _param, value: _protocol(device, value),
    )
    @_options
    @handle_errors
    def command(protocol: str, **kwargs: Any) -> None:
        _run([(device, protocol)], **kwargs)

    if device in ("monitor", "simulator"):
        command = click.option(
            "--spo2", type=float, default=None, metavar="PCT", help="patient SpO2 (%)"
        )(command)
        command = click.option(
            "--hr", type=float, default=None, metavar="BPM", help="patient heart rate (1/min)"
        )(command)
    return command


for _device in PROTOCOL_ALIASES:
    emulate.add_command(_device_command(_device))


@emulate.command("bench")
@click.argument("bench_file", required=False, metavar="[BENCH.toml]")
@_options
@handle_errors
def bench(bench_file: str | None, **kwargs: Any) -> None:
    """Pump (NE-1000), balance (MT-SICS) and bench I/O (Modbus) on one physical line; or,
    given a BENCH.toml, every device of that bench whose port is "emulated" (its
    [emulation] truth, seed and faults; oximeters with their truth monitor parameters).

    With --tcp HOST:PORT they listen on PORT, PORT+1, PORT+2 ... (PORT 0: any free ports).
    """
    if bench_file is None:
        _run(list(BENCH_DEVICES), **kwargs)
        return
    if kwargs.pop("use_pty") and kwargs.get("tcp"):
        raise ConfigurationError("choose --pty or --tcp, not both", source="--tcp")
    ignored = [k for k in ("sets", "faults") if kwargs.get(k)]
    if ignored or kwargs.get("hr") is not None or kwargs.get("spo2") is not None:
        raise ConfigurationError(
            "with a bench file, truth, faults and seed come from its [emulation] table",
            source=bench_file,
        )
    asyncio.run(_serve_bench_file(bench_file, tcp=_tcp(kwargs["tcp"]), as_json=kwargs["as_json"]))


async def _serve_bench_file(path: str, *, tcp: tuple[str, int] | None, as_json: bool) -> None:
    """Every emulated device of the bench file, on one physical bench (as a run builds it)."""
    from medtwin.hil import rig
    from medtwin.hil.config import load_bench

    config = load_bench(path)
    emulated = [cfg for cfg in config.devices if cfg.emulated]
    if not emulated:
        raise ConfigurationError("no device of this bench is emulated", source=path)
    clock = WallClock()
    truth, device_faults = rig._physical_truth(config)
    physical = PhysicalBench(
        truth, clock=clock, seed=config.emulation.seed, device_faults=device_faults
    )
    emulators: list[Any] = []
    served: list[dict[str, str]] = []
    stop = _stop_on_signals()
    try:
        for index, cfg in enumerate(emulated):
            emulator = emulator_class(cfg.protocol)(
                rig._mechanism(physical, config, cfg),
                clock=clock,
                faults=rig._fault_plan(config, cfg),
                **rig._emulator_options(config, cfg),
            )
            emulators.append(emulator)
            where = None if tcp is None else (tcp[0], tcp[1] + index if tcp[1] else 0)
            port = await emulator.start(tcp=where)
            served.append(
                {"port": str(port), "protocol": cfg.protocol, "device": cfg.name, "kind": cfg.kind}
            )
        await _announce_and_wait(served, {"devices": served} if as_json else None, stop)
    finally:
        await _stop_all(emulators)
