"""IEEE 11073-10101 (MDC) nomenclature: the metric and unit codes medtwin tags data with.

Every metric a medtwin device reports (a monitor's heart rate, a pump's rate) carries the
MDC reference id and 32-bit code of ISO/IEEE 11073-10101 *Point-of-care medical device
communication — Nomenclature*, and the reference id and code of its unit, so that the
store, the exports and the reports name what a value is the way SDC (IEEE 11073-10207),
HL7 v2 (IHE PCD-01) and FHIR (HL7 PHD) consumers do.

A 32-bit code is ``partition * 65536 + term code`` (the *context-free* code of
IEEE 11073-10101 §A.3): metrics are in partition 2 (``MDC_PART_SCADA``), units in
partition 4 (``MDC_PART_DIM``). :func:`code32` and :func:`split_code` do the arithmetic.

The standard itself was not at hand. Each entry names where its code was checked
(``source``) and says whether that is a published HL7 terminology binding that lists the
code (``verified=True``: the HL7 Denmark DK Core value set *IEEE Basic Observation*, the
HL7 *Personal Health Device* implementation guide) or only an implementation or a
derivation by the partition rule (``verified=False``, a value to confirm against NIST
RTMMS, https://rtmms.nist.gov, before relying on it). ``docs/protocols/nomenclature.md``
has the table with its sources.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from medtwin.drivers.errors import ConfigurationError

__all__ = [
    "METRICS",
    "UNITS",
    "Metric",
    "Partition",
    "Unit",
    "code32",
    "metric",
    "metric_by_code",
    "split_code",
    "unit",
    "unit_by_code",
]


class Partition(enum.IntEnum):
    """Nomenclature partitions (IEEE 11073-10101) used here and their neighbours."""

    OBJ = 1  # object infrastructure
    SCADA = 2  # physiological and device metrics
    EVT = 3  # events and alerts
    DIM = 4  # units of measure (dimensions)
    INFRA = 8  # infrastructure


_TERM_LIMIT: Final = 1 << 16


def code32(partition: int, term: int) -> int:
    """The context-free 32-bit code of ``term`` in ``partition`` (``partition·65536 + term``).

    >>> code32(Partition.SCADA, 16770)  # MDC_ECG_HEART_RATE
    147842

    Raises
    ------
    ValueError
        If ``partition`` or ``term`` is not an unsigned 16-bit number.
    """
    for name, value in (("partition", partition), ("term code", term)):
        if not 0 <= value < _TERM_LIMIT:
            raise ValueError(f"MDC {name} {value} must be 0..65535 (16 bits)")
    return int(partition) * _TERM_LIMIT + int(term)


def split_code(code: int) -> tuple[int, int]:
    """``(partition, term code)`` of a 32-bit code; inverse of :func:`code32`.

    Raises
    ------
    ValueError
        If ``code`` is not an unsigned 32-bit number.
    """
    if not 0 <= code < 1 << 32:
        raise ValueError(f"MDC code {code} must be an unsigned 32-bit number")
    return divmod(code, _TERM_LIMIT)


@dataclass(frozen=True, slots=True)
class Unit:
    """A unit of measure: MDC reference id and code, UCUM code, display symbol."""

    ref_id: str
    code: int
    ucum: str
    symbol: str
    verified: bool
    source: str

    @property
    def term(self) -> int:
        return split_code(self.code)[1]


@dataclass(frozen=True, slots=True)
class Metric:
    """A metric: MDC reference id and code, its unit's reference id, what it is."""

    ref_id: str
    code: int
    unit_id: str
    description: str
    verified: bool
    source: str

    @property
    def term(self) -> int:
        return split_code(self.code)[1]

    @property
    def unit(self) -> Unit:
        return UNITS[self.unit_id]


_DK_CORE: Final = "HL7 DK Core ValueSet dk-core-IEEEBasicObservation"
_PHD: Final = "HL7 FHIR Personal Health Device IG"
_SDC: Final = "Draegerwerk/sdc11073 tests/mdib_two_mds.xml (implementation)"
_PCD01: Final = "IHE PCD-01 infusion messages in public implementations"
_DERIVED: Final = "partition rule over Philips IntelliVue local codes (derived)"

_UNITS: Final = (
    Unit("MDC_DIM_PERCENT", 262688, "%", "%", False, _DERIVED),
    Unit("MDC_DIM_MILLI_L", 263762, "mL", "mL", False, _PCD01),
    Unit("MDC_DIM_BEAT_PER_MIN", 264864, "/min", "bpm", True, _PHD),
    Unit("MDC_DIM_RESP_PER_MIN", 264928, "/min", "1/min", False, _DERIVED),
    Unit("MDC_DIM_MILLI_L_PER_HR", 265266, "mL/h", "mL/h", False, _SDC),
    Unit("MDC_DIM_MMHG", 266016, "mm[Hg]", "mmHg", True, _PHD),
    Unit("MDC_DIM_DEGC", 268192, "Cel", "°C", False, _DERIVED),
)

_METRICS: Final = (
    Metric(
        "MDC_ECG_HEART_RATE", 147842, "MDC_DIM_BEAT_PER_MIN", "heart rate from the ECG", True,
        _DK_CORE,
    ),
    Metric(
        "MDC_PULS_OXIM_PULS_RATE", 149530, "MDC_DIM_BEAT_PER_MIN", "pulse rate from SpO2",
        True, _PHD,
    ),
    Metric(
        "MDC_PRESS_BLD_NONINV", 150020, "MDC_DIM_MMHG", "NIBP (compound sys/dia/mean)", True,
        _DK_CORE,
    ),
    Metric(
        "MDC_PRESS_BLD_NONINV_SYS", 150021, "MDC_DIM_MMHG", "NIBP systolic", True, _DK_CORE
    ),
    Metric(
        "MDC_PRESS_BLD_NONINV_DIA", 150022, "MDC_DIM_MMHG", "NIBP diastolic", True, _DK_CORE
    ),
    Metric("MDC_PRESS_BLD_NONINV_MEAN", 150023, "MDC_DIM_MMHG", "NIBP mean", True, _DK_CORE),
    Metric("MDC_TEMP", 150344, "MDC_DIM_DEGC", "temperature, site unspecified", False, _DERIVED),
    Metric("MDC_TEMP_BODY", 150364, "MDC_DIM_DEGC", "body temperature", False, _DERIVED),
    Metric(
        "MDC_PULS_OXIM_SAT_O2", 150456, "MDC_DIM_PERCENT", "SpO2 (pulse oximetry)", True,
        _DK_CORE,
    ),
    Metric(
        "MDC_RESP_RATE", 151562, "MDC_DIM_RESP_PER_MIN", "respiration rate, method unspecified",
        True, _DK_CORE,
    ),
    Metric(
        "MDC_AWAY_RESP_RATE", 151570, "MDC_DIM_RESP_PER_MIN", "respiration rate, airway flow",
        True, _DK_CORE,
    ),
    Metric(
        "MDC_TTHOR_RESP_RATE", 151578, "MDC_DIM_RESP_PER_MIN",
        "respiration rate, transthoracic impedance", True, _DK_CORE,
    ),
    Metric(
        "MDC_CO2_RESP_RATE", 151594, "MDC_DIM_RESP_PER_MIN", "respiration rate, from CO2", True,
        _DK_CORE,
    ),
    Metric(
        "MDC_FLOW_FLUID_PUMP", 157784, "MDC_DIM_MILLI_L_PER_HR", "infusion pump flow rate",
        False, _SDC,
    ),
    Metric(
        "MDC_VOL_FLUID_DELIV_TOTAL", 157993, "MDC_DIM_MILLI_L", "volume infused, total", False,
        _PCD01,
    ),
)  # fmt: skip

#: Units by reference id.
UNITS: Final[Mapping[str, Unit]] = {u.ref_id: u for u in _UNITS}
#: Metrics by reference id.
METRICS: Final[Mapping[str, Metric]] = {m.ref_id: m for m in _METRICS}
_UNITS_BY_CODE: Final[Mapping[int, Unit]] = {u.code: u for u in _UNITS}
_METRICS_BY_CODE: Final[Mapping[int, Metric]] = {m.code: m for m in _METRICS}


def metric(ref_id: str) -> Metric:
    """The metric with this reference id (``"MDC_PULS_OXIM_SAT_O2"``).

    Raises
    ------
    ConfigurationError
        Not in the table (a bench or channel naming an unknown metric).
    """
    try:
        return METRICS[ref_id]
    except KeyError:
        raise ConfigurationError(
            f"unknown MDC metric {ref_id!r}; expected one of {', '.join(METRICS)}"
        ) from None


def metric_by_code(code: int) -> Metric:
    """The metric with this 32-bit code (``150456``); ConfigurationError if unknown."""
    try:
        return _METRICS_BY_CODE[code]
    except KeyError:
        partition, term = split_code(code)
        raise ConfigurationError(f"unknown MDC metric code {code} ({partition}::{term})") from None


def unit(ref_id: str) -> Unit:
    """The unit with this reference id (``"MDC_DIM_MMHG"``); ConfigurationError if unknown."""
    try:
        return UNITS[ref_id]
    except KeyError:
        raise ConfigurationError(
            f"unknown MDC unit {ref_id!r}; expected one of {', '.join(UNITS)}"
        ) from None


def unit_by_code(code: int) -> Unit:
    """The unit with this 32-bit code (``266016``); ConfigurationError if unknown."""
    try:
        return _UNITS_BY_CODE[code]
    except KeyError:
        partition, term = split_code(code)
        raise ConfigurationError(f"unknown MDC unit code {code} ({partition}::{term})") from None
