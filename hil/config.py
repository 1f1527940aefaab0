"""Bench and scenario files: the two TOML files a user writes, validated with pydantic.

A **bench file** says what is on the bench: each device's name, kind, protocol and port
(a tty path, ``socket://HOST:PORT``, ``tcp://HOST:PORT`` for Modbus TCP, or ``emulated``:
medtwin starts the emulator in-process on a pty sharing the run's clock), its line
settings (one ``line`` table), its protocol options, its declared limits, and for emulated
devices the truth parameters and fault plan of the one physical bench behind them; and the
twin (model kind and parameters, or the latest calibration of the device). See
``docs/benches-and-scenarios.md``.

A **scenario file** says what happens: a timeline of steps (set rate, start, stop, bolus,
occlude/release, tare, mark ...), how often each device is sampled, the acceptance
tolerances per channel, and optionally the patient the pump infuses (``[patient]``: drug,
concentration, PK model, covariates; :mod:`medtwin.hil.patient_link`).

Every error names ``file:field`` and what was expected (:class:`ConfigurationError`);
all the errors of a file come in one message (its procedures' included), a misspelt key
with a "did you mean" from the fields that table accepts; the CLI exits with status 2 and
writes nothing.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, TypeVar

from medtwin.device_models.base import ParameterError
from medtwin.device_models.patient.demographics import Demographics
from medtwin.drivers.errors import ConfigurationError
from medtwin.drivers.protocol import DeviceKind
from medtwin.drivers.registry import descriptor, protocols
from medtwin.drivers.units import parse_duration_s
from medtwin.drivers.vital_signs import SimulatorLimits
from medtwin.hil.actions import ACTIONS, ArgumentError, unknown_action_message
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

__all__ = [
    "BenchConfig",
    "DeviceConfig",
    "DeviceKind",
    "EmulationConfig",
    "LimitsConfig",
    "LineConfig",
    "PatientConfig",
    "ScenarioConfig",
    "Step",
    "TwinConfig",
    "bench_from_text",
    "load_bench",
    "load_scenario",
    "scenario_from_text",
    "step_from_mapping",
]


def _duration(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 90s, 30min, 2h or 1h30m")
    if isinstance(value, int | float | str):
        return parse_duration_s(value)
    raise ValueError("expected a duration such as 90s, 30min, 2h or 1h30m")


Duration = Annotated[float, BeforeValidator(_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _FileModel(_Strict):
    """A model read from a file: remembers the path and the exact text (stored with runs)."""

    _source: str = PrivateAttr("")
    _text: str = PrivateAttr("")

    @property
    def source(self) -> str:
        return self._source

    @property
    def text(self) -> str:
        return self._text

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self._text.encode("utf-8")).hexdigest()


Range = tuple[float, float]


class LimitsConfig(_Strict):
    """Declared limits of a device; commands outside them are refused before sending.

    A pump's are the ``*_rate_ml_h``, ``*_diameter_mm`` and ``max_volume_ml`` fields; a
    patient simulator's are ranges ``[low, high]`` named as
    :class:`medtwin.drivers.vital_signs.SimulatorLimits` names them (``heart_rate_bpm``,
    ``spo2_percent``, ``resp_rate_min``, ``nibp_mmhg``, ``ibp_mmhg``), unset ones keeping
    the simulator's own range.
    """

    min_rate_ml_h: float = Field(0.0, ge=0)
    max_rate_ml_h: float = Field(math.inf, gt=0)
    min_diameter_mm: float = Field(0.0, ge=0)
    max_diameter_mm: float = Field(math.inf, gt=0)
    max_volume_ml: float = Field(math.inf, gt=0)
    heart_rate_bpm: Range | None = None
    spo2_percent: Range | None = None
    resp_rate_min: Range | None = None
    nibp_mmhg: Range | None = None
    ibp_mmhg: Range | None = None

    @model_validator(mode="after")
    def _ordered(self) -> LimitsConfig:
        if self.min_rate_ml_h > self.max_rate_ml_h:
            raise ValueError("min_rate_ml_h must not exceed max_rate_ml_h")
        if self.min_diameter_mm > self.max_diameter_mm:
            raise ValueError("min_diameter_mm must not exceed max_diameter_mm")
        for name in SIMULATOR_LIMITS:
            given: Range | None = getattr(self, name)
            if given is None:
                continue
            low, high = given
            outer = getattr(SimulatorLimits(), name)
            if not low <= high:
                raise ValueError(f"{name}: low {low:g} must not exceed high {high:g}")
            if low < outer[0] or high > outer[1]:
                raise ValueError(
                    f"{name}: [{low:g}, {high:g}] is wider than the simulator's range "
                    f"[{outer[0]:g}, {outer[1]:g}]"
                )
        return self

    def simulator_limits(self) -> SimulatorLimits:
        """The simulator's limits: the ranges given here, the others the simulator's own."""
        given = {name: getattr(self, name) for name in SIMULATOR_LIMITS}
        return SimulatorLimits(**{k: tuple(v) for k, v in given.items() if v is not None})


#: The simulator ranges a ``limits`` table may declare (a SimulatorLimits field each).
SIMULATOR_LIMITS = ("heart_rate_bpm", "spo2_percent", "resp_rate_min", "nibp_mmhg", "ibp_mmhg")
_PUMP_LIMITS = (
    "min_rate_ml_h",
    "max_rate_ml_h",
    "min_diameter_mm",
    "max_diameter_mm",
    "max_volume_ml",
)


class RetryConfig(_Strict):
    """Timeouts and retries of one device's driver; unset fields keep the driver's default
    (which knows, e.g., that a balance's stable read may take seconds)."""

    timeout_s: float | None = Field(None, gt=0)
    retries: int | None = Field(None, ge=0)
    reconnects: int | None = Field(None, ge=0)


class LineConfig(_Strict):
    """A device's line settings as the bench file gives them (``line = {...}``).

    Only the types are checked here; the values, and which settings the protocol lets a
    bench change, are checked against the protocol's line by
    :func:`medtwin.hil.rig.check_bench` (:class:`medtwin.drivers.transport.SerialLine`).
    Unset settings keep the driver's default.
    """

    baudrate: int | None = Field(None, gt=0)
    bytesize: int | None = None
    parity: str | None = None
    stopbits: float | None = None
    handshake: str | None = None


class DeviceConfig(_Strict):
    """One device on the bench."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: DeviceKind
    protocol: str
    port: str = Field(min_length=1)
    line: LineConfig = LineConfig()
    #: Older spelling of ``line.baudrate``, still accepted (give one or the other).
    baudrate: int | None = Field(None, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)
    emulator_options: dict[str, Any] = Field(default_factory=dict)
    limits: LimitsConfig = LimitsConfig()
    retry: RetryConfig = RetryConfig()
    faults: list[str] = Field(default_factory=list)
    pace: bool = False
    #: An oximeter's declared monitor parameters (the twin's): ``preset`` (default from the
    #: protocol: masimo, nonin) and dotted overrides (``"spo2.averaging_s" = 8.0``).
    monitor: dict[str, float | int | bool | str] = Field(default_factory=dict)
    #: An emulated oximeter's truth: dotted overrides of its declared parameters that the
    #: emulated device has and its twin does not (``"spo2.bias_percent" = 2.0``).
    truth: dict[str, float | int | bool | str] = Field(default_factory=dict)

    @property
    def emulated(self) -> bool:
        return self.port == "emulated"

    def line_settings(self) -> dict[str, Any]:
        """The line settings the bench file gives (``line`` and the ``baudrate`` alias)."""
        given = self.line.model_dump(exclude_none=True)
        if self.baudrate is not None:
            given["baudrate"] = self.baudrate
        return given

    @field_validator("protocol")
    @classmethod
    def _known_protocol(cls, value: str) -> str:
        known = protocols()
        if value not in known:
            raise ValueError(f"unknown protocol {value!r}; expected one of {', '.join(known)}")
        try:
            descriptor(value)
        except ConfigurationError as exc:  # a broken plug-in: say which distribution
            raise ValueError(str(exc).removeprefix("protocol: ")) from None
        return value

    @model_validator(mode="after")
    def _kind_matches(self) -> DeviceConfig:
        protocol = descriptor(self.protocol)
        if protocol.kind is not None and protocol.kind != self.kind:
            raise ValueError(
                f"protocol {self.protocol!r} drives a {protocol.kind}, not a {self.kind}"
            )
        if self.faults and not self.emulated:
            raise ValueError("faults can only be injected into emulated devices")
        if self.emulator_options and not self.emulated:
            raise ValueError("emulator_options apply to emulated devices only")
        if self.emulated and protocol.emulator is None:
            raise ValueError(f"no emulator for protocol {self.protocol!r}")
        if self.baudrate is not None and self.line.baudrate is not None:
            raise ValueError("baudrate is given twice: keep line.baudrate only")
        if self.pace and "baudrate" not in self.line_settings():
            raise ValueError("pace = true needs a baudrate (line = { baudrate = ... })")
        if (self.monitor or self.truth) and self.kind != "oximeter":
            raise ValueError("monitor and truth tables belong to oximeters")
        if self.truth and not self.emulated:
            raise ValueError("truth applies to emulated devices only")
        given = self.limits.model_fields_set
        foreign = sorted(
            given & set(SIMULATOR_LIMITS if self.kind != "simulator" else _PUMP_LIMITS)
        )
        if foreign and self.kind in ("pump", "simulator"):
            raise ValueError(f"a {self.kind} declares no limits.{foreign[0]}")
        return self


class EmulationConfig(_Strict):
    """The physical truth behind every emulated device of the bench."""

    pump: Literal["syringe", "volumetric"] = "syringe"
    syringe: str | None = None
    seed: int = 0
    truth: dict[str, float | int | bool | str] = Field(default_factory=dict)
    faults: list[str] = Field(default_factory=list)


class TwinConfig(_Strict):
    """The twin: a model kind with parameters, optionally the device's latest calibration."""

    pump: Literal["syringe", "volumetric"] = "syringe"
    syringe: str | None = None
    params: dict[str, float | int | bool | str] = Field(default_factory=dict)
    calibration: Literal["none", "latest"] = "none"
    device: str | None = None  # whose calibration (default: the bench's pump)


class BenchConfig(_FileModel):
    name: str = Field(min_length=1)
    description: str = ""
    syringe_library: str | None = None
    devices: list[DeviceConfig] = Field(min_length=1)
    emulation: EmulationConfig = EmulationConfig()
    twin: TwinConfig = TwinConfig()

    @model_validator(mode="after")
    def _unique_names(self) -> BenchConfig:
        names = [d.name for d in self.devices]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"device names must be unique; repeated: {', '.join(duplicates)}")
        kinds = [d.kind for d in self.devices]
        for kind in ("pump", "balance", "bench-io"):
            if kinds.count(kind) > 1:
                raise ValueError(f"at most one {kind} per bench (one physical line)")
        if kinds.count("simulator") > 1:
            raise ValueError("at most one simulator per bench (one simulated patient)")
        return self

    @property
    def all_emulated(self) -> bool:
        return all(d.emulated for d in self.devices)

    def device(self, name: str) -> DeviceConfig:
        for d in self.devices:
            if d.name == name:
                return d
        raise KeyError(name)

    def device_of_kind(self, kind: str) -> DeviceConfig | None:
        for d in self.devices:
            if d.kind == kind:
                return d
        return None


class Step(_Strict):
    """One step of the timeline, at scenario time ``at``.

    ``action`` is a name in :data:`medtwin.hil.actions.ACTIONS`; every other key of the
    ``[[steps]]`` entry is one of that action's named arguments (``rate_ml_h``,
    ``systolic_mmhg`` ...), declared, typed and range-checked by the action's entry alone
    (:meth:`medtwin.hil.actions.Action.check_arguments`), and read back through
    :attr:`arguments` (or as an attribute).
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    at: Duration
    action: str
    device: str | None = None
    note: str = ""

    @field_validator("action", mode="before")
    @classmethod
    def _known_action(cls, value: Any) -> Any:
        # Looked up at validation time, so that an entry added to the table is an action.
        if not isinstance(value, str) or value not in ACTIONS:
            raise ValueError(unknown_action_message())
        return value

    @model_validator(mode="after")
    def _arguments(self) -> Step:
        extra = self.__pydantic_extra__
        checked = ACTIONS[self.action].check_arguments(extra or {})
        if extra is not None:
            extra.clear()
            extra.update(checked)
        return self

    @property
    def arguments(self) -> dict[str, Any]:
        """The step's named arguments, as its action's entry checked them."""
        return dict(self.__pydantic_extra__ or {})


def step_from_mapping(data: Mapping[str, Any], *, source: str) -> Step:
    """One step from a mapping (a bench test's ``act()`` call), checked as a scenario
    file's ``[[steps]]`` entry is; errors name ``source:field``."""
    try:
        return Step.model_validate(dict(data))
    except ValidationError as exc:
        field, message = _first_error(exc)
        raise ConfigurationError(message, source=source, field=field) from None


def _covariate(name: str, value: float) -> float:
    """One covariate checked against the one range table, ``Demographics``'s own."""
    given: dict[str, Any] = {name: value}
    try:
        Demographics(**given)
    except ParameterError as exc:
        raise ValueError(str(exc)) from None
    return value


class PatientConfig(_Strict):
    """The scenario's ``[patient]`` table: the patient the bench's pump infuses.

    The pump's delivered flow (mL/h) times ``concentration_mg_ml`` is the patient's drug
    input, once from the real device's measured delivery and once from the twin's
    (:mod:`medtwin.hil.patient_link`). Whether ``model`` exists for ``drug`` and the
    covariates fit it, and that ``pump`` is a pump on the bench, are checked when the run is
    planned (:class:`medtwin.hil.plan.RunPlan`), naming ``patient.<field>``.
    """

    #: The bench device (a pump) that infuses the drug; default: the bench's pump.
    pump: str | None = None
    drug: Literal["propofol", "remifentanil"]
    #: The PK model's name (``schnider``, ``marsh``, ``minto``, ...).
    model: str = Field(min_length=1)
    concentration_mg_ml: float = Field(gt=0.0)
    age_y: float
    weight_kg: float
    height_cm: float
    sex: Literal["male", "female"]
    #: Where the real delivered flow comes from: ``balance`` (the balance's mass, through
    #: the run's gravimetric policy), ``pump`` (the pump's reported infused volume), or
    #: ``auto`` (the balance when the bench has one, else the pump).
    delivery: Literal["auto", "balance", "pump"] = "auto"
    #: The airway (:mod:`medtwin.device_models.patient.respiration`): ``spontaneous``
    #: breathing, depressed by the drug with PaCO2 feedback, or ``ventilated`` (the minute
    #: ventilation fixed by a ventilator; the displayed RR is its set rate).
    airway: Literal["spontaneous", "ventilated"] = "spontaneous"
    #: Inspired O2 fraction (0.21: room air).
    fio2: float = Field(default=0.21, ge=0.21, le=1.0)

    @field_validator("age_y", "weight_kg", "height_cm")
    @classmethod
    def _in_range(cls, value: float, info: ValidationInfo) -> float:
        return _covariate(str(info.field_name), value)


class ScenarioConfig(_FileModel):
    name: str = Field(min_length=1)
    description: str = ""
    duration: Duration
    sampling: dict[str, Duration] = Field(min_length=1)
    steps: list[Step] = Field(default_factory=list)
    tolerances: dict[str, dict[str, Any]] = Field(default_factory=dict)
    procedures: list[dict[str, Any]] = Field(default_factory=list)
    patient: PatientConfig | None = None

    @field_validator("sampling")
    @classmethod
    def _positive_intervals(cls, value: dict[str, float]) -> dict[str, float]:
        for name, interval in value.items():
            if interval <= 0:
                raise ValueError(f"sampling interval of {name!r} must be > 0")
        return value

    @model_validator(mode="after")
    def _steps_within(self) -> ScenarioConfig:
        if self.duration <= 0:
            raise ValueError("duration must be > 0")
        for index, step in enumerate(self.steps):
            if step.at > self.duration:
                raise ValueError(
                    f"steps[{index}] at {step.at:g} s is after the end ({self.duration:g} s)"
                )
        return self


def _field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _model_at(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at ``loc`` inside ``model`` (None when
    it is a free-form table, such as a device's truth parameters)."""
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue  # an item of a list: the list's element model, found below
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        model = _inner_model(field.annotation)
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def validation_errors(
    exc: ValidationError, model: type[BaseModel] | None, *, prefix: str = ""
) -> list[tuple[str, str]]:
    """Every error of a validation as ``(field, message)``, in the file's order.

    A misspelt key is reported as an unknown field with a "did you mean" from the fields
    that the table accepts (:func:`difflib.get_close_matches`); the required field it was
    meant to be is then not reported missing as well, which would send the user after the
    wrong line.
    """
    errors = exc.errors()
    out: list[tuple[str, str]] = []
    suggested: set[tuple[Any, ...]] = set()
    for error in errors:
        loc = tuple(
            p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-"))
        )
        if error["type"] != "extra_forbidden" or not loc:
            continue
        parent, key = loc[:-1], str(loc[-1])
        table_model = _model_at(model, parent)
        known = list(table_model.model_fields) if table_model is not None else []
        missing = [
            str(e["loc"][-1])
            for e in errors
            if e["type"] == "missing" and tuple(e["loc"][:-1]) == parent
        ]
        matches = difflib.get_close_matches(key, missing or known, n=1, cutoff=0.6)
        if not matches and missing:
            matches = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        if matches:
            suggested.add((*parent, matches[0]))
            error["ctx"] = {"medtwin_suggestion": matches[0]}
    for error in errors:
        loc = tuple(
            p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-"))
        )
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            suggestion = (error.get("ctx") or {}).get("medtwin_suggestion")
            message = (
                f"unknown field; did you mean {suggestion!r}?"
                if suggestion
                else "unknown field (check the spelling; see docs/benches-and-scenarios.md)"
            )
        elif error["type"] == "missing":
            if loc in suggested:
                continue  # reported as the misspelt key above
            message = "required field is missing"
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, ArgumentError) and cause.argument:
            loc = (*loc, cause.argument)  # a step's argument, refused by its action
        field = _field_path(loc)
        out.append((f"{prefix}.{field}" if prefix and field else prefix or field, message))
    return out


def raise_validation_errors(errors: list[tuple[str, str]], *, source: str) -> NoReturn:
    """One :class:`ConfigurationError` for every error of a file: a single error reads as
    before (``file:field: message``), several as one line each under a count."""
    if len(errors) == 1:
        ((field, message),) = errors
        raise ConfigurationError(message, source=source, field=field or None)
    lines = "\n".join(
        f"  {source}:{field}: {message}" if field else f"  {source}: {message}"
        for field, message in errors
    )
    error = ConfigurationError(f"{len(errors)} errors:\n{lines}", source=source)
    error.field = errors[0][0] or None  # the first, for callers that point at one field
    raise error


def _first_error(exc: ValidationError) -> tuple[str, str]:
    """The first of :func:`validation_errors` (a step validated alone)."""
    return validation_errors(exc, None)[0]


def _read_text(path: str | Path, what: str) -> str:
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(f"{what} file not found", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read {what} file: {exc}", source=str(path)) from None


M = TypeVar("M", bound=_FileModel)


def _validate(model: type[M], text: str, source: str) -> M:
    """Parse TOML text into ``model``; errors name ``source:field``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"not valid TOML: {exc}", source=source) from None
    result: M | None = None
    errors: list[tuple[str, str]] = []
    try:
        result = model.model_validate(data)
    except ValidationError as exc:
        errors = validation_errors(exc, model)
    if isinstance(data.get("procedures"), list) and model is ScenarioConfig:
        # The procedures are validated by their own models; their errors join the file's,
        # so that one message lists everything wrong in it.
        from medtwin.hil.procedures import procedure_errors

        errors += procedure_errors(data["procedures"])
    if errors or result is None:
        raise_validation_errors(errors, source=source)
    result._source, result._text = source, text
    return result


def load_bench(path: str | Path) -> BenchConfig:
    """Read and validate a bench file."""
    return _validate(BenchConfig, _read_text(path, "bench"), str(path))


def bench_from_text(text: str, *, source: str = "<stored bench>") -> BenchConfig:
    """Validate a bench file's text (e.g. the copy stored with a run)."""
    return _validate(BenchConfig, text, source)


def load_scenario(path: str | Path) -> ScenarioConfig:
    """Read and validate a scenario file."""
    return _validate(ScenarioConfig, _read_text(path, "scenario"), str(path))


def scenario_from_text(text: str, *, source: str = "<stored scenario>") -> ScenarioConfig:
    """Validate a scenario file's text (e.g. the copy stored with a run)."""
    return _validate(ScenarioConfig, text, source)
