"""``medtwin simulate patient``: the patient model alone, and a monitor's view of it.

A drug (propofol or remifentanil, at ``--concentration`` mg/mL) infused at ``--rate`` mL/h
(constant) or on the rate schedule of a ``--scenario`` file
(:mod:`medtwin.hil.commands.simulate_schedule`) drives the three-compartment PK model
(:mod:`medtwin.device_models.patient.pk`, exact for piecewise-constant infusion), whose
effect-site concentration moves BIS and the vital signs (:mod:`...patient.pd`,
:mod:`...patient.model`); without ``--drug`` only the vital signs are simulated. With
``--monitor`` the CSV also holds what that monitor would display and its alarms
(:mod:`medtwin.device_models.monitor`).

CSV columns, in this order (:func:`column_units`), then any others the models give:
``t_s, rate_ml_h, dose_mg_min, cp, ce, bis, hr_bpm, map_mmhg, rr_min, spo2_percent``;
``cp`` and ``ce`` are in µg/mL for propofol and ng/mL for remifentanil. Without a drug the
four drug columns (``rate_ml_h`` to ``ce``) are left out. Bad input (an unknown drug or
model, a covariate outside the model's published range, a negative rate ...) is a
:class:`ConfigurationError` naming the option: exit status 2, nothing written.
"""

from __future__ import annotations

import csv
import io
import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import click
import numpy as np
from medtwin.device_models.base import ParameterError
from medtwin.device_models.patient.demographics import Demographics
from medtwin.drivers.errors import ConfigurationError
from medtwin.hil.cli import handle_errors, parse_duration_option
from medtwin.hil.commands.simulate_schedule import (
    RateSchedule,
    constant_schedule,
    schedule_from_scenario,
)
from medtwin.hil.config import PatientConfig, ScenarioConfig, load_scenario
from medtwin.hil.files import write_atomically
from numpy.typing import NDArray

__all__ = [
    "PatientRequest",
    "column_units",
    "request_from_options",
    "simulate_columns",
    "simulate_patient",
]

FloatArray = NDArray[np.float64]

#: The columns every CSV starts with, in order; ``None``: the drug's concentration unit.
DRUG_COLUMNS: tuple[tuple[str, str | None], ...] = (
    ("rate_ml_h", "mL/h"),
    ("dose_mg_min", "mg/min"),
    ("cp", None),
    ("ce", None),
)
VITAL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("bis", "0-100"),
    ("hr_bpm", "1/min"),
    ("map_mmhg", "mmHg"),
    ("rr_min", "1/min"),
    ("spo2_percent", "%"),
)

#: What each option of the command line is called in the models' error messages.
_OPTION_OF = {
    "drug": "--drug",
    "model": "--model",
    "age_y": "--age",
    "weight_kg": "--weight",
    "height_cm": "--height",
    "sex": "--sex",
    "concentration_mg_ml": "--concentration",
}


def _concentration_unit(drug: str) -> str:
    from medtwin.device_models.patient import pk

    return pk.DRUGS[drug][0].replace("ug", "µg")


def column_units(drug: str | None) -> dict[str, str]:
    """The leading columns (in order) and their units, for ``drug`` (None: vitals only)."""
    units: dict[str, str] = {"t_s": "s"}
    if drug is not None:
        unit = _concentration_unit(drug)
        units.update({name: u or unit for name, u in DRUG_COLUMNS})
    units.update(VITAL_COLUMNS)
    return units


@dataclass(frozen=True)
class PatientRequest:
    """What to simulate, checked (see :func:`request_from_options`).

    Attributes
    ----------
    drug, model : str or None
        None: no drug, vital signs only.
    patient : Demographics
    concentration_mg_ml : float
        The syringe's concentration (mg/mL); 0 without a drug.
    schedule : RateSchedule
        The pump's rate (mL/h) over the run.
    interval_s : float
        Output interval (s).
    seed : int
        Seed of every random draw (vital-sign variability, signals, the monitor).
    monitor : str or None
        A monitor preset, or None for the patient alone.
    """

    drug: str | None
    model: str | None
    patient: Demographics
    concentration_mg_ml: float
    schedule: RateSchedule
    interval_s: float
    seed: int = 0
    monitor: str | None = None
    #: Scripted patient events (:mod:`medtwin.device_models.patient.events`).
    events: tuple[Any, ...] = ()
    #: ``spontaneous`` or ``ventilated`` (:mod:`medtwin.device_models.patient.respiration`).
    airway: str = "spontaneous"
    #: Inspired O2 fraction.
    fio2: float = 0.21

    @property
    def t_s(self) -> FloatArray:
        """The output times (s): 0, interval, ... up to the duration (inclusive)."""
        step = self.interval_s
        return np.arange(0.0, self.schedule.duration_s + step * 1e-9, step)


#: Where a value came from: ``(source, field)`` of a ConfigurationError; an option
#: (``("--age", None)``) unless the scenario's ``[patient]`` table gave it.
Origins = dict[str, tuple[str, str | None]]


def _option(name: str) -> tuple[str, str | None]:
    return _OPTION_OF[name], None


def _error(message: str, name: str, origins: Origins) -> ConfigurationError:
    """An error about the value ``name`` (``age_y``, ``model`` ...), naming where it came
    from: its option, or the scenario file's ``patient.<name>``."""
    source, field = origins.get(name, _option(name))
    return ConfigurationError(message, source=source, field=field)


def _model_error(exc: ParameterError, default: str, origins: Origins) -> ConfigurationError:
    """A model's ParameterError as the error of the value it is about (``age_y = ...``
    → ``--age``, or ``scenario.toml:patient.age_y``)."""
    message = str(exc)
    name = message.split(" ", 1)[0]
    return _error(message, name if name in _OPTION_OF else default, origins)


def _patient_from(
    scenario_patient: PatientConfig | None,
    age: float | None,
    weight: float | None,
    height: float | None,
    sex: str | None,
    *,
    required: bool,
    origins: Origins,
) -> Demographics:
    given: dict[str, Any] = {}
    if scenario_patient is not None:
        given = {
            "age_y": scenario_patient.age_y,
            "weight_kg": scenario_patient.weight_kg,
            "height_cm": scenario_patient.height_cm,
            "sex": scenario_patient.sex,
        }
    for name, value in (("age_y", age), ("weight_kg", weight), ("height_cm", height)):
        if value is not None:
            if not math.isfinite(value):
                raise ConfigurationError(f"{value} is not a number", source=_OPTION_OF[name])
            given[name] = value
            origins.pop(name, None)
    if sex is not None:
        if sex not in ("male", "female"):
            raise ConfigurationError(f"sex {sex!r}: expected male or female", source="--sex")
        given["sex"] = sex
        origins.pop("sex", None)
    missing = [
        _OPTION_OF[name] for name in ("age_y", "weight_kg", "height_cm", "sex") if name not in given
    ]
    if required and missing:
        raise ConfigurationError(
            f"a PK model needs the patient's covariates: give {', '.join(missing)}",
            source=missing[0],
        )
    try:
        return Demographics(**given)
    except ParameterError as exc:
        raise _model_error(exc, "age_y", origins) from None


def load_events(path: str) -> tuple[Any, ...]:
    """The patient events of an events file: a TOML file of ``[[events]]`` tables, each a
    ``kind`` and that event's fields (:func:`...patient.events.event_from_mapping`).

    Raises
    ------
    ConfigurationError
        Naming the file and ``events[i].field``.
    """
    from medtwin.device_models.patient.events import events_from_mappings

    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError("events file not found", source=path) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read the events file: {exc}", source=path) from None
    unknown = sorted(set(data) - {"events"})
    if unknown:
        raise ConfigurationError(
            f"unknown key {unknown[0]!r}: an events file holds [[events]] tables only",
            source=path,
        )
    specs = data.get("events", [])
    if not isinstance(specs, list):
        raise ConfigurationError("expected [[events]] tables", source=path, field="events")
    try:
        return tuple(events_from_mappings(specs))
    except ParameterError as exc:
        raise ConfigurationError(str(exc), source=path) from None


def request_from_options(
    *,
    drug: str | None,
    model: str | None,
    age: float | None,
    weight: float | None,
    height: float | None,
    sex: str | None,
    concentration: float | None,
    rate: float | None,
    scenario_file: str | None,
    duration: str | None,
    interval: str,
    seed: int,
    monitor: str | None,
    events_file: str | None = None,
    airway: str | None = None,
    fio2: float | None = None,
) -> PatientRequest:
    """Check the command line (and the scenario file it names) into a request.

    Options given on the command line win over the scenario's ``[patient]`` table.

    Raises
    ------
    ConfigurationError
        Naming the option (or ``file:field``) and what was expected.
    """
    from medtwin.device_models.patient import pk

    scenario: ScenarioConfig | None = None
    if scenario_file is not None:
        if rate is not None:
            raise ConfigurationError(
                "give a constant --rate or a --scenario's rate schedule, not both", source="--rate"
            )
        scenario = load_scenario(scenario_file)
    table = scenario.patient if scenario is not None else None
    origins: Origins = {}
    if scenario is not None and table is not None:
        # What the table gives is named by its file and field in errors, until an option
        # replaces it.
        origins = {name: (scenario.source, f"patient.{name}") for name in _OPTION_OF}
        if drug is None:
            drug = table.drug
        else:
            origins.pop("drug")
        if model is None:
            model = table.model
        else:
            origins.pop("model")
        if concentration is None:
            concentration = table.concentration_mg_ml
        else:
            origins.pop("concentration_mg_ml")

    if drug is not None:
        if drug not in pk.DRUGS:
            raise _error(
                f"unknown drug {drug!r}; expected one of {', '.join(sorted(pk.DRUGS))} "
                "(or no --drug for vital signs only)",
                "drug",
                origins,
            )
        known = sorted(m for d, m in pk.MODELS if d == drug)
        if model is None:
            raise ConfigurationError(
                f"give the PK model of {drug}: {', '.join(known)}", source="--model"
            )
        if (drug, model) not in pk.MODELS:
            raise _error(
                f"unknown {drug} model {model!r}; expected one of {', '.join(known)}",
                "model",
                origins,
            )
        if concentration is None:
            raise ConfigurationError(
                f"give the {drug} concentration in the syringe (mg/mL)", source="--concentration"
            )
        if not (math.isfinite(concentration) and concentration > 0):
            raise _error(
                f"concentration {concentration:g} mg/mL must be > 0", "concentration_mg_ml", origins
            )
    else:
        for option, value in (
            ("--model", model),
            ("--concentration", concentration),
            ("--rate", rate),
        ):
            if value is not None:
                raise ConfigurationError(
                    "needs --drug (without one: vital signs only)", source=option
                )

    if rate is not None and not (math.isfinite(rate) and rate >= 0):
        raise ConfigurationError(f"rate {rate:g} mL/h must be >= 0", source="--rate")

    patient = _patient_from(
        table, age, weight, height, sex, required=drug is not None, origins=origins
    )
    if drug is not None:
        assert model is not None
        try:
            pk.pk_params(drug, model, patient)
        except ParameterError as exc:
            raise _model_error(exc, "model", origins) from None

    if duration is not None:
        total_s = parse_duration_option(duration, option="--duration")
    elif scenario is not None:
        total_s = float(scenario.duration)
    else:
        raise ConfigurationError("give the simulated time, e.g. 60min", source="--duration")
    step_s = parse_duration_option(interval, option="--interval")
    if total_s <= 0:
        raise ConfigurationError("the duration must be > 0", source="--duration")
    if step_s <= 0:
        raise ConfigurationError("the interval must be > 0", source="--interval")

    if drug is not None and rate is None and scenario is None:
        raise ConfigurationError(
            "give the infusion rate (mL/h) or a --scenario with a rate schedule", source="--rate"
        )
    if scenario is not None:
        planned = schedule_from_scenario(scenario)
        schedule = RateSchedule(planned.start_s, planned.rate_ml_h, total_s)
    else:
        schedule = constant_schedule(rate or 0.0, total_s)
    if monitor is not None:
        monitor = _check_monitor(monitor)
    events = load_events(events_file) if events_file is not None else ()
    if airway is None:
        airway = table.airway if table is not None else "spontaneous"
    if fio2 is None:
        fio2 = table.fio2 if table is not None else 0.21
    return PatientRequest(
        drug=drug,
        model=model,
        patient=patient,
        concentration_mg_ml=float(concentration or 0.0),
        schedule=schedule,
        interval_s=step_s,
        seed=seed,
        monitor=monitor,
        events=events,
        airway=airway,
        fio2=float(fio2),
    )


def _check_monitor(name: str) -> str:
    from medtwin.device_models.monitor.params import PRESETS

    if name not in PRESETS:
        raise ConfigurationError(
            f"unknown monitor {name!r}; expected one of {', '.join(PRESETS)}", source="--monitor"
        )
    return name


#: The patient model's grid is at most this coarse (s): the vital signs' variability, the
#: R peaks and what the monitor averages are computed on it, whatever ``--interval`` is.
PATIENT_STEP_S = 1.0


def patient_grid(request: PatientRequest) -> tuple[FloatArray, NDArray[np.intp]]:
    """The patient model's time grid and where the output times are on it.

    The grid divides the output interval into whole steps of at most
    :data:`PATIENT_STEP_S`, so every output time is a grid point and the patient's true
    values do not depend on ``--interval`` beyond the grid they are drawn on.

    Returns
    -------
    t_s : ndarray, shape (g,)
    index : ndarray of int, shape (n,)
        ``t_s[index]`` are the output times :attr:`PatientRequest.t_s`.
    """
    per = max(1, math.ceil(request.interval_s / PATIENT_STEP_S - 1e-9))
    out = request.t_s
    step_s = request.interval_s / per
    grid = np.asarray(np.arange((out.size - 1) * per + 1) * step_s, dtype=np.float64)
    index = np.arange(out.size) * per
    grid[index] = out  # exactly the output times, not a product rounded differently
    return grid, index


def simulate_record(request: PatientRequest) -> Any:
    """The patient on :func:`patient_grid` (a :class:`~...patient.model.PatientRecord`)."""
    from medtwin.device_models.base import with_overrides
    from medtwin.device_models.patient.model import Infusion, PatientParams, simulate_patient

    grid, _ = patient_grid(request)
    infusions: tuple[Infusion, ...] = ()
    if request.drug is not None:
        assert request.model is not None
        infusions = (
            Infusion(
                request.drug,
                request.model,
                request.concentration_mg_ml,
                request.schedule.rate_ml_h,
                request.schedule.start_s,
            ),
        )
    params = with_overrides(
        PatientParams.for_patient(request.patient),
        {"respiration.airway": request.airway, "spo2.fio2": request.fio2},
    )
    return simulate_patient(
        grid,
        rng=np.random.default_rng(request.seed),
        demographics=request.patient,
        params=params,
        events=request.events,
        infusions=infusions,
    )


def _monitor_columns(
    request: PatientRequest, record: Any, t: FloatArray
) -> tuple[dict[str, NDArray[Any]], list[dict[str, Any]]]:
    """What the monitor shows at each output time (the last update at or before it) and
    the alarm signals on then; and every alarm episode (for the summary)."""
    from medtwin.device_models.monitor.monitor import MonitorInput, simulate_monitor
    from medtwin.device_models.monitor.params import monitor_preset

    assert request.monitor is not None
    shown = simulate_monitor(
        MonitorInput(
            t_s=record.t_s,
            spo2_true_percent=record.spo2_percent,
            pi_percent=record.pi_percent,
            sensor_off=record.sensor_off,
            motion=record.motion,
            r_peak_times_s=record.r_peak_times_s(),
        ),
        monitor_preset(request.monitor),
    )
    index = np.searchsorted(shown.t_s, t + 1e-9, side="right") - 1
    before = index < 0
    index = np.clip(index, 0, None)

    def held(values: FloatArray) -> FloatArray:
        return np.where(before, np.nan, values[index]) if values.size else np.full(t.size, np.nan)

    sounding: list[list[str]] = [[] for _ in range(t.size)]
    episodes: list[dict[str, Any]] = []
    for alarm in shown.alarms:
        episodes.append(
            {
                "condition": alarm.condition,
                "priority": alarm.priority,
                "kind": alarm.kind,
                **{
                    name: None if math.isnan(value) else value
                    for name, value in (
                        ("t1_s", alarm.t1_s),
                        ("t2_s", alarm.t2_s),
                        ("t3_s", alarm.t3_s),
                        ("t_end_s", alarm.t_end_s),
                    )
                },
            }
        )
        if not alarm.generated:
            continue
        end = math.inf if math.isnan(alarm.t_end_s) else alarm.t_end_s
        for i in np.flatnonzero((t >= alarm.t3_s) & (t < end)):
            sounding[i].append(alarm.condition)
    columns: dict[str, NDArray[Any]] = {
        "hr_displayed": held(shown.hr_bpm),
        "spo2_displayed": held(shown.spo2_percent),
        "pi_displayed": held(shown.pi_percent),
        "alarms": np.array([";".join(sorted(set(names))) for names in sounding], dtype=object),
    }
    return columns, episodes


def simulate_columns(
    request: PatientRequest,
) -> tuple[dict[str, NDArray[Any]], dict[str, str], list[dict[str, Any]]]:
    """Run the models: every column at the output times in CSV order, their units, and the
    monitor's alarm episodes (empty without ``--monitor``)."""
    from medtwin.device_models.patient import pk

    record = simulate_record(request)
    _, at = patient_grid(request)
    t = record.t_s[at]
    units = column_units(request.drug)
    columns: dict[str, NDArray[Any]] = {"t_s": t}
    if request.drug is not None:
        rate = request.schedule.at(t)
        columns["rate_ml_h"] = rate
        columns["dose_mg_min"] = pk.dose_rate_mg_min(rate, request.concentration_mg_ml)
        columns["cp"] = record.cp[at]
        columns["ce"] = record.ce[at]
    columns["bis"] = record.bis[at]
    columns["hr_bpm"] = record.hr_bpm[at]
    columns["map_mmhg"] = record.nibp_mean_mmhg[at]
    columns["rr_min"] = record.rr_min[at]
    columns["spo2_percent"] = record.spo2_percent[at]
    for name, unit, values in (
        ("sys_mmhg", "mmHg", record.nibp_sys_mmhg),
        ("dia_mmhg", "mmHg", record.nibp_dia_mmhg),
        ("temp_c", "°C", record.temp_c),
        ("pi_percent", "%", record.pi_percent),
        ("apnoea", "0/1", record.apnoea),
        ("sensor_off", "0/1", record.sensor_off),
        ("motion", "0/1", record.motion),
    ):
        columns[name] = values[at]
        units[name] = unit
    episodes: list[dict[str, Any]] = []
    if request.monitor is not None:
        shown, episodes = _monitor_columns(request, record, t)
        columns.update(shown)
        units.update(
            {
                "hr_displayed": "1/min",
                "spo2_displayed": "%",
                "pi_displayed": "%",
                "alarms": "conditions",
            }
        )
    return columns, units, episodes


def _format_column(values: NDArray[Any]) -> list[str]:
    if values.dtype.kind == "b":
        return ["1" if v else "0" for v in values.tolist()]
    if values.dtype.kind in "iu":
        return [str(v) for v in values.tolist()]
    if values.dtype.kind in "OU":
        return [str(v) for v in values.tolist()]
    return ["nan" if math.isnan(v) else repr(v) for v in values.astype(float).tolist()]


def _write_csv(path: Path, columns: dict[str, NDArray[Any]]) -> None:
    if not (path.parent if str(path.parent) else Path()).is_dir():
        raise ConfigurationError(f"directory {path.parent} does not exist", source="--out")
    names = list(columns)
    text_columns = [_format_column(np.asarray(columns[name])) for name in names]

    def write(stream: BinaryIO) -> None:
        text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
        writer = csv.writer(text)
        writer.writerow(names)
        writer.writerows(zip(*text_columns, strict=True))
        text.flush()
        text.detach()

    write_atomically(path, write, source="--out")


@click.command("patient")
@click.option(
    "--drug", metavar="NAME", default=None, help="propofol or remifentanil; none: vitals only"
)
@click.option("--model", metavar="NAME", default=None, help="PK model: schnider, marsh, minto")
@click.option("--age", type=float, default=None, help="age, years")
@click.option("--weight", type=float, default=None, help="total body weight, kg")
@click.option("--height", type=float, default=None, help="height, cm")
@click.option("--sex", metavar="male|female", default=None, help="sex")
@click.option("--concentration", type=float, default=None, help="drug in the syringe, mg/mL")
@click.option("--rate", type=float, default=None, help="constant infusion rate, mL/h")
@click.option(
    "--scenario", "scenario_file", metavar="FILE", default=None, help="a scenario's rate schedule"
)
@click.option("--duration", default=None, help="e.g. 60min, 2h (default: the scenario's)")
@click.option("--interval", default="10s", show_default=True, help="output interval")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of every random draw")
@click.option(
    "--events",
    "events_file",
    metavar="FILE",
    default=None,
    help="patient events: a TOML file of [[events]]",
)
@click.option(
    "--monitor",
    metavar="NAME",
    default=None,
    help="add a monitor's view: generic, masimo, nonin, philips, mindray",
)
@click.option(
    "--airway",
    type=click.Choice(["spontaneous", "ventilated"]),
    default=None,
    help="spontaneous breathing (default) or ventilated (RR = the set rate)",
)
@click.option(
    "--fio2",
    type=click.FloatRange(0.21, 1.0),
    default=None,
    help="inspired O2 fraction (default 0.21, room air, or the scenario's)",
)
@click.option("--out", metavar="FILE", default=None, help="CSV file to write")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document")
@handle_errors
def simulate_patient(
    drug: str | None,
    model: str | None,
    age: float | None,
    weight: float | None,
    height: float | None,
    sex: str | None,
    concentration: float | None,
    rate: float | None,
    scenario_file: str | None,
    duration: str | None,
    interval: str,
    seed: int,
    events_file: str | None,
    monitor: str | None,
    airway: str | None,
    fio2: float | None,
    out: str | None,
    as_json: bool,
) -> None:
    """Simulate a patient (PK/PD and vital signs), optionally seen by a monitor, and write
    a CSV.

    Columns: t_s, rate_ml_h, dose_mg_min, cp, ce, bis, hr_bpm, map_mmhg, rr_min,
    spo2_percent, then the others. cp and ce are in µg/mL for propofol and ng/mL for
    remifentanil; without --drug the drug columns are left out.
    """
    request = request_from_options(
        drug=drug,
        model=model,
        age=age,
        weight=weight,
        height=height,
        sex=sex,
        concentration=concentration,
        rate=rate,
        scenario_file=scenario_file,
        duration=duration,
        interval=interval,
        seed=seed,
        monitor=monitor,
        events_file=events_file,
        airway=airway,
        fio2=fio2,
    )
    if out is None:
        raise ConfigurationError("give the CSV file to write", source="--out")
    path = Path(out)
    if not (path.parent if str(path.parent) else Path()).is_dir():
        raise ConfigurationError(f"directory {path.parent} does not exist", source="--out")
    columns, units, episodes = simulate_columns(request)
    _write_csv(path, columns)
    _summary(path, request, columns, units, episodes, as_json)


def _summary(
    path: Path,
    request: PatientRequest,
    columns: dict[str, NDArray[Any]],
    units: dict[str, str],
    episodes: list[dict[str, Any]],
    as_json: bool,
) -> None:
    t = columns["t_s"]
    doc: dict[str, Any] = {
        "out": str(path),
        "rows": int(t.size),
        "duration_s": float(t[-1]),
        "drug": request.drug,
        "model": request.model,
        "monitor": request.monitor,
        "seed": request.seed,
        "columns": units,
    }
    if request.drug is not None:
        doc["infused_ml"] = request.schedule.volume_ml()
        doc["max_cp"] = float(np.max(columns["cp"]))
        doc["max_ce"] = float(np.max(columns["ce"]))
        doc["min_bis"] = float(np.min(columns["bis"]))
    if request.monitor is not None:
        doc["alarms"] = episodes
    if as_json:
        click.echo(json.dumps(doc))
        return
    click.echo(f"wrote {doc['rows']} rows to {path}")
    if request.drug is not None:
        unit = units["cp"]
        click.echo(
            f"{request.drug} ({request.model}): {doc['infused_ml']:.4g} mL infused; peak cp "
            f"{doc['max_cp']:.4g} {unit}, peak ce {doc['max_ce']:.4g} {unit}, "
            f"lowest BIS {doc['min_bis']:.0f}"
        )
    if request.monitor is not None:
        signalled = [e for e in episodes if e["t3_s"] is not None]
        click.echo(
            f"{request.monitor} monitor: {len(signalled)} alarm signal(s) of "
            f"{len(episodes)} alarm condition(s)"
            + "".join(f"; {e['condition']} at {e['t3_s']:g} s" for e in signalled[:5])
        )
