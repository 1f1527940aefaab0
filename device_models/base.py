"""The contract every device model follows, and the parameter machinery they share.

A device model in medtwin is written the way ``scipy.integrate.OdeSolver`` documents its
subclasses: a short list of obligations a new model must meet.

1. **Parameters are frozen dataclasses** whose field names carry their unit
   (``inner_diameter_mm``, ``compliance_ul_per_mmhg``, ``rate_ml_h``). Each field is
   declared with :func:`param`, which records the unit, a one-line description and the
   valid range; :func:`validate` checks the ranges and :func:`list_parameters` /
   :func:`with_overrides` address any field by its dotted name
   (``pump.drive.lead_mm``), which is how ``medtwin simulate --set`` and bench files
   change them.
2. **Inputs are piecewise constant between commands** (a
   :class:`~medtwin.device_models.schedule.Schedule`). Models use exact discrete-time updates
   across each constant-input interval (closed
   form / matrix exponential), never a generic ODE solver stepping across a
   discontinuity. ``scipy.integrate.solve_ivp`` is the *test* reference only.
3. **Whole schedules at once, vectorised over time and over a batch** of parameter sets
   (Monte Carlo): one call simulates ``B`` parameter sets on one schedule and returns
   arrays of shape ``(B, n)``. A batch of one equals a single call.
4. **An incremental form** for live use (emulators, the live twin): the same update
   advanced to "now" on demand, giving exactly what the batch form gives at that time.
5. **Randomness only from an explicit seeded** ``numpy.random.Generator`` passed in by the
   caller; a model never creates an unseeded generator.
6. **No I/O, no asyncio, no SQL**: numpy and scipy only. Errors are :class:`ValueError`
   subclasses (:class:`ParameterError`) whose message names the parameter.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "ParameterError",
    "ParameterInfo",
    "list_parameters",
    "param",
    "validate",
    "with_overrides",
]

T = TypeVar("T")


class ParameterError(ValueError):
    """A model parameter is unknown, of the wrong type or outside its valid range."""


@dataclass(frozen=True)
class ParameterInfo:
    """One leaf parameter: dotted name, unit, current value, description and range."""

    name: str
    unit: str
    value: Any
    doc: str
    minimum: float | None
    maximum: float | None


def param(
    default: Any,
    *,
    unit: str,
    doc: str,
    minimum: float | None = None,
    maximum: float | None = None,
) -> Any:
    """Declare a parameter field with its unit, description and valid range."""
    return dataclasses.field(
        default=default,
        metadata={"unit": unit, "doc": doc, "minimum": minimum, "maximum": maximum},
    )


def _fields(obj: object) -> Iterator[tuple[dataclasses.Field[Any], Any]]:
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        yield f, getattr(obj, f.name)


def list_parameters(obj: object, prefix: str = "") -> list[ParameterInfo]:
    """Every leaf parameter of a (nested) parameter dataclass, by dotted name."""
    out: list[ParameterInfo] = []
    for f, value in _fields(obj):
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out.extend(list_parameters(value, prefix=name + "."))
            continue
        meta = f.metadata
        out.append(
            ParameterInfo(
                name=name,
                unit=str(meta.get("unit", "")),
                value=value,
                doc=str(meta.get("doc", "")),
                minimum=meta.get("minimum"),
                maximum=meta.get("maximum"),
            )
        )
    return out


def validate(obj: object, prefix: str = "") -> None:
    """Check every numeric parameter against its declared range (recursively).

    Raises
    ------
    ParameterError
        Naming the dotted parameter, its value and the valid range.
    """
    for f, value in _fields(obj):
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            validate(value, prefix=name + ".")
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        lo, hi = f.metadata.get("minimum"), f.metadata.get("maximum")
        unit = f.metadata.get("unit", "")
        if not math.isfinite(value) and not (math.isinf(value) and hi is None and value > 0):
            raise ParameterError(f"parameter {name} = {value!r} must be a finite number")
        if lo is not None and value < lo:
            raise ParameterError(f"parameter {name} = {value:g} {unit} is below its minimum {lo:g}")
        if hi is not None and value > hi:
            raise ParameterError(f"parameter {name} = {value:g} {unit} is above its maximum {hi:g}")


def _coerce(name: str, current: Any, value: Any) -> Any:
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ParameterError(f"parameter {name} expects true/false, got {value!r}")
    if isinstance(current, int) and not isinstance(current, bool):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ParameterError(f"parameter {name} expects an integer, got {value!r}") from None
        if not number.is_integer():
            raise ParameterError(f"parameter {name} expects an integer, got {value!r}")
        return int(number)
    if isinstance(current, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ParameterError(f"parameter {name} expects a number, got {value!r}") from None
    if isinstance(current, str):
        return str(value)
    raise ParameterError(f"parameter {name} cannot be set from {value!r}")


def _set_path(obj: T, path: list[str], value: Any, full: str, resolvers: Mapping[str, Any]) -> T:
    head, rest = path[0], path[1:]
    names = {f.name for f in dataclasses.fields(obj)}  # type: ignore[arg-type]
    if head not in names:
        raise ParameterError(f"unknown parameter {full!r} (no field {head!r})")
    current = getattr(obj, head)
    if rest:
        if not (dataclasses.is_dataclass(current) and not isinstance(current, type)):
            raise ParameterError(f"unknown parameter {full!r} ({head!r} has no sub-fields)")
        new_value = _set_path(current, rest, value, full, resolvers)
    elif dataclasses.is_dataclass(current) and not isinstance(current, type):
        # A whole sub-model given by name, e.g. pump.syringe = "Terumo 20 mL".
        resolver = resolvers.get(full) or resolvers.get(type(current).__name__)
        if resolver is None or not isinstance(value, str):
            raise ParameterError(
                f"parameter {full!r} is a group; set one of its fields "
                f"({', '.join(f.name for f in dataclasses.fields(current))})"
            )
        new_value = resolver(value)
    else:
        new_value = _coerce(full, current, value)
    return dataclasses.replace(obj, **{head: new_value})  # type: ignore[type-var]


def with_overrides(
    obj: T, overrides: Mapping[str, Any], *, resolvers: Mapping[str, Any] | None = None
) -> T:
    """A copy of ``obj`` with dotted-name overrides applied, then validated.

    ``resolvers`` maps a group's dotted name (or its class name) to a callable that builds
    the group from a string, e.g. the syringe library for ``pump.syringe``.

    Raises
    ------
    ParameterError
        For an unknown name, a value of the wrong type, or a value outside its range.
    """
    result = obj
    for name, value in overrides.items():
        result = _set_path(result, name.split("."), value, name, resolvers or {})
    validate(result)
    return result
