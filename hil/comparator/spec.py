"""Per-channel comparator settings: :class:`ChannelSpec`, the scenario's ``[tolerances.<name>]``.

The defaults and their justification (in-control average run lengths after Brook & Evans
1972 and Lucas & Saccucci 1990) are in the package docstring and ``docs/comparator.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import KW_ONLY, asdict, dataclass, fields
from typing import Any, Final, Literal, NoReturn, TypeAlias, get_args

from medtwin.drivers.errors import ConfigurationError
from medtwin.drivers.units import parse_duration_s

__all__ = ["DETECTORS", "ChannelSpec", "Detector", "Direction", "Rearm", "json_float"]

Detector: TypeAlias = Literal["tolerance", "cusum", "ewma"]
Direction: TypeAlias = Literal["high", "low"]
Rearm: TypeAlias = Literal["latch", "restart"]

DETECTORS: Final[tuple[Detector, ...]] = ("tolerance", "cusum", "ewma")


@dataclass(frozen=True)
class ChannelSpec:
    """How one channel's residual is judged. Field names are the scenario file's keys.

    Parameters
    ----------
    name : str
        Channel name (``mass_g``, ``pressure_mmhg``, ...).
    unit : str
        Unit of the channel (for reports only).
    abs_tol : float
        Absolute half-width of the tolerance band, channel units; ``inf`` (default) switches
        the band off unless ``rel_tol`` is set.
    rel_tol : float
        Relative half-width of the band, as a fraction of ``|twin|`` (0.02 = 2 %).
    persistence_s : float
        How long, s, the band must be exceeded before it fires (and respected before it may
        fire again). Time inside data gaps does not count.
    noise_sd : float or None
        The residual's white-noise standard deviation σ, channel units; ``None`` estimates it
        from the first ``noise_window_s`` of the run.
    noise_window_s : float
        Length, s, of the window σ is estimated from.
    cusum_k, cusum_h : float
        CUSUM reference value and decision interval, in σ units.
    cusum_rearm : {"latch", "restart"}
        What the CUSUM does after an alarm (see the module docstring).
    ewma_lambda : float
        EWMA weight λ, 0 < λ ≤ 1.
    ewma_l : float
        EWMA limit width L, in standard deviations of the EWMA statistic.
    detectors : tuple of {"tolerance", "cusum", "ewma"}
        The detectors that run.
    min_samples : int
        No detector may fire before the channel has delivered this many valid samples
        (statistics still accumulate during the warm-up).
    band_k : float
        Coverage factor of the twin's prediction band: where the twin gives the standard
        deviation ``sd`` of its prediction (a calibrated twin), the tolerance band's
        half-width is ``max(abs_tol + rel_tol·|twin|, band_k·sd)``. 3 (default) is the
        coverage factor k of GUM (JCGM 100:2008) 6.3 for about 99.7 % of a normal
        prediction error.
    """

    name: str
    _: KW_ONLY
    unit: str = ""
    abs_tol: float = math.inf
    rel_tol: float = 0.0
    persistence_s: float = 10.0
    noise_sd: float | None = None
    noise_window_s: float = 600.0
    cusum_k: float = 0.5
    cusum_h: float = 18.0
    cusum_rearm: Rearm = "latch"
    ewma_lambda: float = 0.01
    ewma_l: float = 6.3
    detectors: tuple[Detector, ...] = DETECTORS
    min_samples: int = 30
    band_k: float = 3.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigurationError(
                f"channel name must be a non-empty string, got {self.name!r}", field="tolerances"
            )
        if not isinstance(self.unit, str):
            self._fail("unit", f"expected a string, got {self.unit!r}")
        self._number("abs_tol", allow_inf=True, minimum=0.0, strict=False)
        self._number("rel_tol", minimum=0.0, strict=False)
        self._number("persistence_s", minimum=0.0, strict=False)
        if self.noise_sd is not None:
            self._number("noise_sd", minimum=0.0, strict=True)
        self._number("noise_window_s", minimum=0.0, strict=True)
        self._number("cusum_k", minimum=0.0, strict=False)
        self._number("band_k", minimum=0.0, strict=False)
        self._number("cusum_h", minimum=0.0, strict=True)
        self._number("ewma_lambda", minimum=0.0, strict=True)
        if self.ewma_lambda > 1.0:
            self._fail("ewma_lambda", f"expected 0 < λ ≤ 1, got {self.ewma_lambda!r}")
        self._number("ewma_l", minimum=0.0, strict=True)
        if self.cusum_rearm not in get_args(Rearm):
            self._fail("cusum_rearm", f"expected 'latch' or 'restart', got {self.cusum_rearm!r}")
        if isinstance(self.min_samples, bool) or not isinstance(self.min_samples, int):
            self._fail("min_samples", f"expected an integer, got {self.min_samples!r}")
        if self.min_samples < 0:
            self._fail("min_samples", f"expected an integer ≥ 0, got {self.min_samples!r}")
        detectors: object = self.detectors
        if isinstance(detectors, str) or not isinstance(detectors, Iterable):
            self._fail("detectors", f"expected a list of {list(DETECTORS)}, got {detectors!r}")
        names = tuple(detectors)
        for det in names:
            if det not in DETECTORS:
                self._fail("detectors", f"unknown detector {det!r}; expected some of {DETECTORS}")
        if len(set(names)) != len(names):
            self._fail("detectors", f"detector listed twice in {list(names)}")
        object.__setattr__(self, "detectors", names)
        for name in ("abs_tol", "rel_tol", "persistence_s", "noise_window_s", "cusum_k"):
            object.__setattr__(self, name, float(getattr(self, name)))
        for name in ("cusum_h", "ewma_lambda", "ewma_l", "band_k"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.noise_sd is not None:
            object.__setattr__(self, "noise_sd", float(self.noise_sd))

    def _fail(self, name: str, message: str) -> NoReturn:
        raise ConfigurationError(message, field=f"tolerances.{self.name}.{name}")

    def _number(self, name: str, *, minimum: float, strict: bool, allow_inf: bool = False) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._fail(name, f"expected a number, got {value!r}")
        value = float(value)
        if math.isnan(value) or (math.isinf(value) and not allow_inf):
            self._fail(name, f"expected a finite number, got {value!r}")
        if value < minimum or (strict and value == minimum):
            relation = ">" if strict else "≥"
            self._fail(name, f"expected a number {relation} {minimum:g}, got {value!r}")

    @property
    def needs_sigma(self) -> bool:
        """Whether a σ-based detector (CUSUM or EWMA) is enabled."""
        return "cusum" in self.detectors or "ewma" in self.detectors

    @classmethod
    def from_mapping(
        cls, name: str, table: Mapping[str, Any], *, source: str | None = None
    ) -> ChannelSpec:
        """Build a spec from a scenario's ``[tolerances.<name>]`` table.

        Keys are the field names of this class. ``persistence_s`` and ``noise_window_s`` also
        accept duration strings (``"30s"``, ``"10min"``); leaving ``noise_sd`` out means
        "estimate it".

        Raises
        ------
        ConfigurationError
            Naming ``source`` and ``tolerances.<name>.<key>`` for an unknown key, a value of
            the wrong type or out of range.
        """
        known = {f.name for f in fields(cls) if f.name not in ("name", "_")}
        kwargs: dict[str, Any] = {}
        for key, value in table.items():
            where = f"tolerances.{name}.{key}"
            if key == "name":
                if value != name:
                    raise ConfigurationError(
                        f"table is for channel {name!r} but says name = {value!r}",
                        source=source,
                        field=where,
                    )
                continue
            if key not in known:
                raise ConfigurationError(
                    f"unknown field {key!r}; expected one of {sorted(known)}",
                    source=source,
                    field=where,
                )
            if key in ("persistence_s", "noise_window_s") and isinstance(value, str):
                try:
                    value = parse_duration_s(value)
                except ValueError as exc:
                    raise ConfigurationError(str(exc), source=source, field=where) from None
            if key == "detectors" and isinstance(value, list):
                value = tuple(value)
            kwargs[key] = value
        try:
            return cls(name, **kwargs)
        except ConfigurationError as exc:
            message = str(exc).split(": ", 1)[-1] if exc.field else str(exc)
            raise ConfigurationError(message, source=source, field=exc.field) from None

    def as_json(self) -> dict[str, Any]:
        """The spec as JSON-safe values (``abs_tol = inf`` becomes ``null``: no absolute band)."""
        out = asdict(self)
        out["detectors"] = list(self.detectors)
        return {key: json_float(value) for key, value in out.items()}


def json_float(value: Any) -> Any:
    """``value`` with non-finite floats replaced by None (JSON has no NaN or infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
