"""QA reports of stored runs: one self-contained HTML file, PNG figures and a JSON summary.

A report is what a QA engineer files for one run of :mod:`medtwin.hil.runner`: who and what was on
the bench (device identities, ports, the bench and scenario files with their SHA-256), the
twin's calibration, the IEC 60601-2-24 results (start-up curve and trumpet curve of
IEC 60601-2-24:1998 clause 50.102, kept by the 2012 edition in 201.12.1; the occlusion test
of the 2012 edition under 201.12.4.4; bolus accuracy of 1998 clause 50.106; clause numbers
as in :mod:`medtwin.hil.analysis.iec60601_2_24`, where the unconfirmed ones are marked), the
verdicts of the real device and of the twin side by side, the real − twin residuals and
the drift events, and the event log.

    >>> with RunStore("sqlite:///medtwin.db", create=False) as store:  # doctest: +SKIP
    ...     run = store.load_run(7)
    ...     calibration = calibration_in_force(store, run)
    >>> write_report(run, Path("report-7.html"), calibration=calibration)  # doctest: +SKIP

What it guarantees
------------------
* **Self-contained.** CSS is inline, figures are PNG ``data:`` URIs, there is no script
  and no reference to anything outside the file, so the HTML can be mailed, archived or
  printed as is.
* **Deterministic.** The report is a function of the stored run (and the calibration
  handed in): no generation time is written anywhere, PNGs carry no ``Software`` or time
  stamp chunk, and matplotlib runs with its built-in default style whatever the user's
  ``matplotlibrc`` says. Rendering a run twice with the same installation gives the same
  bytes.
* **Nothing disappears silently.** Every section is always present; one that does not
  apply to the run (no occlusion procedure, no line pressure recorded) says so in one line.
* **Numbers come from the run.** Trumpet and start-up curves are the analyses stored with
  the run; when a run has a flow procedure but no stored analysis (an aborted or
  interrupted run), they are computed from the stored balance channels with
  :mod:`medtwin.hil.analysis.iec60601_2_24`, and the report says so. Time series are plotted from
  the stored channels; verdicts are the stored verdicts.
* **Files are never half-written.** :func:`save_report` writes every file under a
  temporary name in its target directory and renames it into place only when all of them
  are complete.

Figures use matplotlib's object-oriented API on the Agg canvas directly (no pyplot): no
display is needed, no global figure registry holds the figures, so nothing is left open.
The HTML is assembled by hand with :func:`html.escape` because the report is a fixed
layout of tables and figures: a template engine would be a new dependency for no gain.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math
import struct
import tomllib
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib.style
import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory
from medtwin.drivers.base import DeviceIdentity
from medtwin.drivers.errors import AnalysisError, ConfigurationError, StorageError
from medtwin.hil.analysis import iec60601_2_24 as iec
from medtwin.hil.files import FileBatch
from medtwin.hil.measurements import outcome_label
from medtwin.hil.procedures import FlowProcedure, parse_procedures
from medtwin.hil.store import CalibrationRecord, ChannelData, RunData, RunStore, VerdictRecord

__all__ = [
    "REPORT_FORMAT",
    "REPORT_FORMAT_VERSION",
    "SECTIONS",
    "Report",
    "ReportFigure",
    "ReportFiles",
    "ReportSection",
    "build_report",
    "calibration_in_force",
    "save_report",
    "write_report",
]

FloatArray = npt.NDArray[np.float64]

REPORT_FORMAT = "medtwin-report"
REPORT_FORMAT_VERSION = 1

#: Every report has these sections, in this order: (key, heading).
SECTIONS: tuple[tuple[str, str], ...] = (
    ("run", "Run"),
    ("devices", "Bench and devices"),
    ("scenario", "Scenario"),
    ("calibration", "Twin calibration"),
    ("verdicts", "Verdicts"),
    ("startup", "Start-up curve"),
    ("trumpet", "Trumpet curve"),
    ("flow", "Flow and residual"),
    ("pressure", "Line pressure"),
    ("occlusion", "Occlusion test"),
    ("bolus", "Bolus accuracy"),
    ("drift", "Drift events"),
    ("residuals", "Residual statistics"),
    ("events", "Event log"),
)

_FLOW_KIND = "iec60601-2-24.flow"
_OCCLUSION_KIND = "iec60601-2-24.occlusion"
_BOLUS_KIND = "iec60601-2-24.bolus"
_SOURCES = ("real", "twin")

# Outcome precedence of the overall verdict, as hil.measurements.overall_outcome: a FAIL
# anywhere fails the run; an UNSET (nothing measured) outranks MARGINAL because an
# unmeasured claim cannot be shown to hold.
_OUTCOME_ORDER = ("FAIL", "UNSET", "MARGINAL", "PASS")

# Figures: size in inches at _DPI; the HTML scales them down to the page width.
_DPI = 100
_WIDE = 9.0
# Above this many points a trace is reduced to a min/max envelope per bucket before
# plotting: 4000 points is about four per pixel of a 9-inch figure, so nothing visible is
# lost, and the report of a 96-hour run at 0.5 s (12 channels of 700 000 samples) builds
# in about a second, as fast as that of a 2-hour run (measured).
_MAX_PLOT_POINTS = 4000
_REAL_COLOUR = "#1f77b4"
_TWIN_COLOUR = "#ff7f0e"
#: Line colour and style of each source, in every figure that shows both.
_SOURCE_STYLES = {"real": (_REAL_COLOUR, "-"), "twin": (_TWIN_COLOUR, "--")}
_LIMIT_COLOUR = "#d62728"
_DETECTOR_COLOURS = {"tolerance": "#d62728", "cusum": "#9467bd", "ewma": "#8c564b"}
# matplotlib's built-in defaults plus a few of ours, applied whatever the user's
# matplotlibrc says, so that a report does not depend on who renders it (its bytes still
# depend on the matplotlib and FreeType versions installed).
_STYLE: dict[str, Any] = {
    "font.size": 9.0,
    "axes.titlesize": 10.0,
    "axes.grid": True,
    "grid.alpha": 0.35,
    "legend.fontsize": 8.0,
    "legend.framealpha": 0.85,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
}


# --------------------------------------------------------------------------- public data


@dataclass(frozen=True, eq=False)
class ReportFigure:
    """One figure of a report.

    Attributes
    ----------
    name : str
        File stem (``trumpet``, ``flow``; ``trumpet-2`` for a second flow procedure).
    title : str
        What the figure shows (the ``alt`` text and the PNG ``Title`` chunk).
    section : str
        Key of the section it belongs to (see :data:`SECTIONS`).
    png : bytes
        The PNG image.
    width_px, height_px : int
        Its size in pixels.
    """

    name: str
    title: str
    section: str
    png: bytes
    width_px: int
    height_px: int

    @property
    def filename(self) -> str:
        """``<name>.png``, the file written by :func:`save_report` with ``out_dir``."""
        return f"{self.name}.png"

    def data_uri(self) -> str:
        """The PNG as a ``data:image/png;base64,...`` URI."""
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclass(frozen=True)
class ReportSection:
    """One section: its key and heading, whether it applies to the run, its HTML body."""

    key: str
    title: str
    applies: bool
    body_html: str


@dataclass(frozen=True, eq=False)
class Report:
    """A report held in memory (see :func:`build_report`).

    Attributes
    ----------
    run_id : int
        The run reported on.
    title : str
        The document title.
    sections : tuple of ReportSection
        In the order of :data:`SECTIONS`.
    figures : tuple of ReportFigure
        In the order they appear.
    summary : dict
        JSON-able: run metadata, verdicts, drift events, analyses, residuals (strict JSON:
        non-finite numbers are ``None``). Written as ``summary.json`` by
        :func:`save_report`.
    html : str
        The complete, self-contained HTML document.
    """

    run_id: int
    title: str
    sections: tuple[ReportSection, ...]
    figures: tuple[ReportFigure, ...]
    summary: dict[str, Any]
    html: str

    def section(self, key: str) -> ReportSection:
        """The section with ``key`` (KeyError naming the keys if there is none)."""
        for section in self.sections:
            if section.key == key:
                return section
        raise KeyError(f"no section {key!r}; sections are {', '.join(k for k, _ in SECTIONS)}")

    def figure(self, name: str) -> ReportFigure:
        """The figure called ``name`` (KeyError naming the figures if there is none)."""
        for figure in self.figures:
            if figure.name == name:
                return figure
        names = ", ".join(f.name for f in self.figures) or "none"
        raise KeyError(f"no figure {name!r}; figures are {names}")


@dataclass(frozen=True)
class ReportFiles:
    """What :func:`save_report` wrote: the HTML, the PNGs and ``summary.json`` (or None)."""

    html: Path
    pngs: tuple[Path, ...] = ()
    summary_json: Path | None = None


# --------------------------------------------------------------------------- small helpers


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _finite(value: Any) -> float | None:
    """``value`` as a finite float, or None (None, NaN, infinities, non-numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _num(value: Any, digits: int = 4, *, signed: bool = False) -> str:
    number = _finite(value)
    if number is None:
        return "—"
    return f"{number:+.{digits}g}" if signed else f"{number:.{digits}g}"


def _clock(t_s: Any) -> str:
    """Scenario time as ``h:mm:ss`` (with tenths when not a whole second)."""
    number = _finite(t_s)
    if number is None:
        return "—"
    sign = "-" if number < 0 else ""
    number = abs(number)
    tenths = round(number * 10)
    whole, frac = divmod(tenths, 10)
    hours, rest = divmod(whole, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{sign}{hours}:{minutes:02d}:{seconds:02d}"
    return f"{text}.{frac}" if frac else text


def _utc(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _plain(value: Any) -> Any:
    """Strict-JSON copy: numpy scalars and arrays unwrapped, non-finite floats → None."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return _finite(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


def _floats(values: Any) -> FloatArray:
    """A stored JSON list of numbers as float64 (None and non-numbers become NaN)."""
    return np.array([_finite(v) if _finite(v) is not None else np.nan for v in _list(values)])


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _png_size(png: bytes) -> tuple[int, int]:
    # IHDR is always the first chunk: width and height are big-endian uint32 at 16..24.
    width, height = struct.unpack(">II", png[16:24])
    return int(width), int(height)


def _generator() -> str:
    """``medtwin <version>``: what wrote the report (the run records what wrote the run)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"medtwin {version('medtwin')}"
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "medtwin (unknown version)"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _toml(text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return {}


def _table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    table_id: str | None = None,
    numeric_from: int = 1,
    row_attrs: Sequence[str] | None = None,
) -> str:
    """An HTML table; cells are already-escaped HTML (``<td>`` or ``<th>`` included or not).

    A cell that starts with ``<td`` is used as is (for classes and data attributes);
    others are wrapped, right-aligned from column ``numeric_from`` on.
    """
    out = [f'<table id="{_esc(table_id)}">' if table_id else "<table>", "<thead><tr>"]
    out += [f"<th>{_esc(h)}</th>" for h in headers]
    out.append("</tr></thead><tbody>")
    for i, row in enumerate(rows):
        attrs = f" {row_attrs[i]}" if row_attrs and row_attrs[i] else ""
        out.append(f"<tr{attrs}>")
        for j, cell in enumerate(row):
            if cell.startswith("<td"):
                out.append(cell)
            else:
                cls = ' class="num"' if j >= numeric_from else ""
                out.append(f"<td{cls}>{cell}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _facts(items: Iterable[tuple[str, str]]) -> str:
    """A two-column key/value table (values are already-escaped HTML)."""
    rows = "".join(f"<tr><th>{_esc(k)}</th><td>{v}</td></tr>" for k, v in items)
    return f'<table class="facts"><tbody>{rows}</tbody></table>'


def _na(text: str) -> str:
    return f'<p class="na">{_esc(text)}</p>'


def _outcome_cell(
    outcome: str | None, *, source: str, value: str = "", badge: str | None = None
) -> str:
    """A verdict cell; ``badge`` overrides the text of the outcome badge (``info``)."""
    if outcome is None:
        return f'<td class="outcome none" data-source="{source}">—</td>'
    label = f"{value} " if value else ""
    shown = outcome if badge is None else badge
    return (
        f'<td class="outcome {_esc(shown)}" data-source="{source}" '
        f'data-outcome="{_esc(outcome)}">{label}<span class="badge">{_esc(shown)}</span></td>'
    )


def _overall(outcomes: Iterable[str]) -> str | None:
    seen = set(outcomes)
    for outcome in _OUTCOME_ORDER:
        if outcome in seen:
            return outcome
    return None


def _channel(run: RunData, name: str, source: str) -> ChannelData | None:
    try:
        return run.channel(name, source=source)
    except StorageError:
        return None


def _has_data(channel: ChannelData | None) -> bool:
    return channel is not None and bool(np.isfinite(channel.values).any())


def _residual(run: RunData, name: str) -> tuple[FloatArray, FloatArray] | None:
    """(t_s, real − twin) at the real samples' times; NaN where either side has none."""
    real, twin = _channel(run, name, "real"), _channel(run, name, "twin")
    if real is None or twin is None or len(real) == 0 or len(twin) == 0:
        return None
    if real.t_s.shape == twin.t_s.shape and np.array_equal(real.t_s, twin.t_s):
        twin_at = twin.values
    else:
        # The runner stores both sides at the same timestamps; a run written by other
        # tools may not, so the twin is interpolated onto the real times.
        ok = np.isfinite(twin.values)
        if not ok.any():
            return None
        twin_at = np.interp(real.t_s, twin.t_s[ok], twin.values[ok], left=np.nan, right=np.nan)
    return real.t_s, real.values - twin_at


def _envelope(t_s: FloatArray, values: FloatArray) -> tuple[FloatArray, FloatArray]:
    """At most ``_MAX_PLOT_POINTS`` points: per bucket of consecutive samples its minimum
    and maximum at the bucket's mean time, so spikes stay visible. Buckets without a
    finite value stay NaN (a gap in the line); shorter gaps are below a pixel anyway."""
    n = t_s.size
    if n <= _MAX_PLOT_POINTS:
        return t_s, values
    buckets = _MAX_PLOT_POINTS // 2
    size = -(-n // buckets)
    pad = buckets * size - n
    t_grid = np.concatenate([t_s, np.full(pad, np.nan)]).reshape(-1, size)
    v_grid = np.concatenate([values, np.full(pad, np.nan)]).reshape(-1, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN buckets are gaps
        low = np.nanmin(v_grid, axis=1)
        high = np.nanmax(v_grid, axis=1)
        centre = np.nanmean(t_grid, axis=1)
    return np.repeat(centre, 2), np.column_stack([low, high]).ravel()


@dataclass(frozen=True)
class _TimeAxis:
    scale_s: float
    label: str

    def __call__(self, t_s: Any) -> Any:
        return np.asarray(t_s, dtype=np.float64) / self.scale_s


def _time_axis(run: RunData) -> _TimeAxis:
    end = 0.0
    for ch in run.channels:
        if len(ch):
            end = max(end, float(np.nanmax(ch.t_s)))
    # Hours only for runs longer than 4 h: the IEC flow test (2 h) reads best in minutes,
    # matching the minutes of its analysis periods and windows.
    if end > 4 * 3600.0:
        return _TimeAxis(3600.0, "scenario time (h)")
    return _TimeAxis(60.0, "scenario time (min)")


# --------------------------------------------------------------------------- run facts


def _bench_twin(run: RunData) -> dict[str, Any]:
    return _dict(_toml(run.bench_text).get("twin"))


def _pump_device(run: RunData) -> str | None:
    twin = _bench_twin(run)
    if isinstance(twin.get("device"), str):
        return str(twin["device"])
    for device in run.devices:
        if device.kind == "pump":
            return device.name
    return run.devices[0].name if run.devices else None


def _calibration_keys(run: RunData, device_name: str | None) -> list[str]:
    """Keys the device's calibrations may be filed under, from the identity it reported.

    :func:`medtwin.hil.calibration.calibration_key` files them (``model/serial``, or
    ``model/<bench>:<device>`` for a device that reports no serial, as the NE-1000 does)
    and :mod:`medtwin.hil.runner` looks them up the same way; runs stored before that rule used
    :attr:`medtwin.drivers.base.DeviceIdentity.key`, so both are searched.
    """
    from medtwin.hil.calibration import calibration_key

    for device in run.devices:
        if device.name != device_name:
            continue
        model = str(device.identity.get("model") or "").strip()
        serial = str(device.identity.get("serial") or "").strip()
        if not model:
            return []
        filed = calibration_key(model, serial, bench=run.info.bench_name, device=device.name)
        looked_up = DeviceIdentity(protocol=device.protocol, model=model, serial=serial).key
        return list(dict.fromkeys([filed, looked_up]))
    return []


def _dotted(params: Any, name: str) -> Any:
    node = params
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _calibration_matches(record: CalibrationRecord, twin_params: Any) -> bool | None:
    """True when every calibrated value is the run's twin parameter, False when one
    differs, None when a parameter is not in the stored twin parameters (cannot tell)."""
    verdict: bool | None = True
    for name, entry in record.params.items():
        stored = _finite(_dotted(twin_params, name))
        value = _finite(entry.get("value"))
        if stored is None or value is None:
            verdict = None
            continue
        if not math.isclose(stored, value, rel_tol=1e-12, abs_tol=1e-15):
            return False
    return verdict


def calibration_in_force(store: RunStore, run: RunData) -> CalibrationRecord | None:
    """The calibration the twin of ``run`` used, or None for a nominal twin.

    A twin is calibrated when the bench file says ``[twin] calibration = "latest"``; the
    runner records the version it took in the run's summary (``calibration``: device key,
    version, id), and that is the one returned. For runs stored without that record, it is
    found again: the newest version whose values are exactly the twin parameters stored
    with the run, else the newest one created before the run started (the report then
    flags that the values differ from the run's twin).

    Raises
    ------
    StorageError
        The calibrations cannot be read.
    """
    if _bench_twin(run).get("calibration", "none") != "latest":
        return None
    used = run.summary.get("calibration") if isinstance(run.summary, Mapping) else None
    if isinstance(used, Mapping) and used.get("device_key"):
        for record in store.calibrations(str(used["device_key"])):
            if record.version == used.get("version"):
                return record
    records = [
        record
        for key in _calibration_keys(run, _pump_device(run))
        for record in store.calibrations(key)
    ]
    records.sort(key=lambda r: r.created_utc)
    for record in reversed(records):
        if _calibration_matches(record, run.twin_params):
            return record
    earlier = [r for r in records if r.created_utc <= run.info.started_utc]
    return earlier[-1] if earlier else None


# --------------------------------------------------------------------------- procedures


@dataclass
class _Procedure:
    """A procedure of the run's scenario with what the run stored about it."""

    kind: str
    label: str
    table: dict[str, Any]
    parsed: Any | None
    stored: dict[str, Any] | None
    analysis: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    origin: str = "none"  # "stored" | "recomputed" | "none"


def _procedures(run: RunData) -> list[_Procedure]:
    summary = _dict(run.summary)
    stored = {
        str(p.get("label")): p for p in _list(summary.get("procedures")) if isinstance(p, dict)
    }
    tables = [t for t in _list(_toml(run.scenario_text).get("procedures")) if isinstance(t, dict)]
    out: list[_Procedure] = []
    for index, table in enumerate(tables):
        label = f"procedures[{index}]"
        parsed: Any | None
        try:
            parsed = parse_procedures(
                [{**table, "label": label}], source=f"run {run.info.id} scenario"
            )[0]
        except ConfigurationError:
            parsed = None  # shown from what the run stored, if anything
        entry = stored.pop(label, None)
        out.append(
            _Procedure(
                kind=str(table.get("kind", "")),
                label=label,
                table=table,
                parsed=parsed,
                stored=entry,
            )
        )
    # Procedures the summary has but the scenario text does not (a run stored by other
    # tools): still reported.
    for label, entry in stored.items():
        out.append(_Procedure(str(entry.get("kind", "")), label, {}, None, entry))
    for procedure in out:
        _resolve_analysis(run, procedure)
    return out


def _density_g_ml(run: RunData) -> float:
    """Displayed grams per mL, as the runner's analyses used it: the twin's balance (water
    temperature and air buoyancy; the model's defaults where the run stored none)."""
    from medtwin.device_models.balance import BalanceParams

    balance = _dict(_dict(run.twin_params).get("balance"))
    defaults = BalanceParams()
    try:
        params = BalanceParams(
            temperature_c=float(balance.get("temperature_c", defaults.temperature_c)),
            air_buoyancy=bool(balance.get("air_buoyancy", defaults.air_buoyancy)),
        )
    except (TypeError, ValueError):  # a stored temperature outside the model's range
        return defaults.grams_per_ml
    return params.grams_per_ml


def _resolve_analysis(run: RunData, procedure: _Procedure) -> None:
    stored = procedure.stored or {}
    analysis = _dict(stored.get("analysis"))
    procedure.errors.update({str(k): str(v) for k, v in _dict(stored.get("errors")).items()})
    for source in _SOURCES:
        if isinstance(analysis.get(source), dict):
            procedure.analysis[source] = analysis[source]
    if procedure.analysis:
        procedure.origin = "stored"
        return
    if not isinstance(procedure.parsed, FlowProcedure) or procedure.errors:
        return
    procedure.origin = "recomputed"
    for source in _SOURCES:
        try:
            analysis, trumpet_error = _recompute_flow(run, procedure.parsed, source)
        except AnalysisError as exc:
            procedure.errors[source] = str(exc)
            continue
        procedure.analysis[source] = analysis
        if trumpet_error:
            procedure.errors[source] = f"trumpet curve: {trumpet_error}"


def _recompute_flow(run: RunData, flow: FlowProcedure, source: str) -> tuple[dict[str, Any], str]:
    """Start-up and trumpet curves of one side from the stored balance mass.

    Same inputs as the runner's own analysis (:class:`medtwin.hil.procedures.FlowProcedure`): S,
    the analysis period, the windows and the density of the twin's balance. A start-up
    period longer than the data is shortened to the data (an aborted run still shows how
    delivery started); a trumpet curve whose analysis period is not covered is left out
    and the reason returned ("" when it was computed).

    Raises
    ------
    AnalysisError
        Not even a start-up curve can be computed.
    """
    balance = next((d.name for d in run.devices if d.kind == "balance"), None)
    channel = _channel(run, f"{balance}.mass_g", source) if balance else None
    if channel is None:
        raise AnalysisError(f"the run has no {source} balance mass channel")
    keep = np.isfinite(channel.values) & np.isfinite(channel.t_s)
    t_s, mass_g = channel.t_s[keep], channel.values[keep]
    if t_s.size < 2:
        raise AnalysisError(f"the {source} balance mass has fewer than two samples")
    density = _density_g_ml(run)
    interval_min = float(flow.interval) / 60.0
    start_s = float(flow.at)
    covered_min = (float(t_s[-1]) - start_s) / 60.0
    startup_min = min(120.0, float(flow.duration) / 60.0)
    startup_min = min(startup_min, math.floor(covered_min / interval_min + 1e-9) * interval_min)
    if startup_min < interval_min:
        raise AnalysisError(
            f"the {source} balance log covers {covered_min:.3g} min after the start, less "
            f"than one sample interval S = {interval_min:g} min"
        )
    startup = iec.startup_curve(
        t_s,
        mass_g,
        sample_interval_min=interval_min,
        density_g_ml=density,
        period_min=startup_min,
        start_s=start_s,
    )
    period_min = [float(p) / 60.0 for p in flow.analysis_period]
    result: dict[str, Any] = {
        "rate_ml_h": float(flow.rate_ml_h),
        "interval_min": interval_min,
        "analysis_period_min": period_min,
        "density_g_ml": density,
        "startup": {
            "t_min": np.asarray(startup.t_min).tolist(),
            "flow_ml_h": np.asarray(startup.flow_ml_h).tolist(),
        },
    }
    try:
        curve = iec.trumpet_curve(
            t_s,
            mass_g,
            rate_ml_h=float(flow.rate_ml_h),
            sample_interval_min=interval_min,
            density_g_ml=density,
            analysis_period_min=period_min,
            windows_min=tuple(float(w) for w in flow.windows_min),
            start_s=start_s,
        )
    except AnalysisError as exc:
        return result, str(exc)
    result["trumpet"] = curve.as_dict()
    return result, ""


def _accuracy_limits(
    procedure: _Procedure, verdicts: Sequence[VerdictRecord]
) -> tuple[float | None, float | None]:
    """The declared flow accuracy (lower, upper) in %: the procedure's claim, else the
    limits stored with the mean-error verdict."""
    accuracy = _finite(getattr(procedure.parsed, "accuracy_percent", None))
    if accuracy is not None:
        return -accuracy, accuracy
    for verdict in verdicts:
        if verdict.measurement == "mean_flow_error_a":
            return verdict.lower, verdict.upper
    return None, None


# --------------------------------------------------------------------------- figures


class _Figures:
    """Collects the report's figures; every figure is rendered and dropped at once."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self.items: list[ReportFigure] = []

    def new(self, height_in: float, rows: int = 1) -> tuple[Figure, list[Axes]]:
        figure = Figure(figsize=(_WIDE, height_in), dpi=_DPI, layout="constrained")
        FigureCanvasAgg(figure)
        if rows == 1:
            return figure, [figure.add_subplot()]
        axes = figure.subplots(rows, 1, sharex=True, squeeze=False)
        return figure, [ax for row in axes for ax in row]

    def add(self, figure: Figure, *, name: str, title: str, section: str) -> ReportFigure:
        buffer = io.BytesIO()
        # Software: None drops the only default PNG text chunk (matplotlib's version), and
        # no time chunk is written: the same run renders to the same bytes.
        figure.savefig(
            buffer,
            format="png",
            dpi=_DPI,
            metadata={"Software": None, "Title": f"run {self.run_id}: {title}"},
        )
        figure.clear()
        png = buffer.getvalue()
        width, height = _png_size(png)
        item = ReportFigure(name, title, section, png, width, height)
        self.items.append(item)
        return item


def _figure_html(figure: ReportFigure, caption: str) -> str:
    return (
        f'<figure id="fig-{_esc(figure.name)}"><img src="{figure.data_uri()}" '
        f'alt="{_esc(figure.title)}" width="{figure.width_px}" height="{figure.height_px}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _mark_drift(ax: Axes, events: Sequence[tuple[int, dict[str, Any]]], axis: _TimeAxis) -> None:
    """Shade each drift event from onset to detection; dashed line at the onset, solid at
    the detection, numbered as in the drift-event table."""
    trans = blended_transform_factory(ax.transData, ax.transAxes)
    for position, (number, event) in enumerate(events):
        onset = _finite(event.get("onset_t_s"))
        detected = _finite(event.get("detected_t_s"))
        if detected is None:
            continue
        colour = _DETECTOR_COLOURS.get(str(event.get("statistic")), "#7f7f7f")
        if onset is not None:
            ax.axvspan(axis(onset), axis(detected), color=colour, alpha=0.12, lw=0)
            ax.axvline(axis(onset), color=colour, ls="--", lw=0.9)
        ax.axvline(axis(detected), color=colour, ls="-", lw=1.2)
        ax.text(
            axis(detected),
            # Staggered: detectors often fire seconds apart on the same channel.
            0.97 - 0.1 * (position % 3),
            f" #{number}",
            transform=trans,
            color=colour,
            va="top",
            ha="left",
            fontsize=8,
        )


def _drift_legend(ax: Axes, events: Sequence[tuple[int, dict[str, Any]]]) -> None:
    if not events:
        return
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Any] = [
        Line2D([], [], color="#555555", ls="--", lw=0.9, label="drift onset (estimated)"),
        Line2D([], [], color="#555555", ls="-", lw=1.2, label="drift detected"),
    ]
    detectors = sorted({str(e.get("statistic")) for _, e in events})
    handles += [
        Patch(color=_DETECTOR_COLOURS.get(d, "#7f7f7f"), alpha=0.5, label=f"detector: {d}")
        for d in detectors
    ]
    ax.legend(handles=handles, loc="lower left", ncols=2)


def _plot_pair(
    ax: Axes,
    run: RunData,
    name: str,
    axis: _TimeAxis,
    *,
    real_label: str = "real",
    twin_label: str = "twin",
) -> bool:
    drawn = False
    labels = {"real": real_label, "twin": twin_label}
    for source, (colour, style) in _SOURCE_STYLES.items():
        channel = _channel(run, name, source)
        if channel is None or not _has_data(channel):
            continue
        t_s, values = _envelope(channel.t_s, channel.values)
        ax.plot(axis(t_s), values, color=colour, ls=style, lw=1.0, label=labels[source])
        drawn = True
    return drawn


def _plot_residual(
    ax: Axes,
    run: RunData,
    name: str,
    unit: str,
    axis: _TimeAxis,
    events: Sequence[tuple[int, dict[str, Any]]],
) -> bool:
    residual = _residual(run, name)
    if residual is None or not np.isfinite(residual[1]).any():
        return False
    t_s, values = _envelope(*residual)
    ax.plot(axis(t_s), values, color="#2ca02c", lw=0.9, label=f"{name}: real − twin")
    ax.axhline(0.0, color="#555555", lw=0.7)
    ax.set_ylabel(f"residual ({unit})")
    _mark_drift(ax, events, axis)
    ax.legend(loc="upper right")
    return True


# --------------------------------------------------------------------------- the builder


@dataclass
class _Context:
    run: RunData
    calibration: CalibrationRecord | None
    procedures: list[_Procedure]
    drift: list[tuple[int, dict[str, Any]]]
    figures: _Figures
    axis: _TimeAxis
    summary_procedures: list[dict[str, Any]] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[_Procedure]:
        return [p for p in self.procedures if p.kind == kind]

    def drift_on(self, channel: str) -> list[tuple[int, dict[str, Any]]]:
        return [(n, e) for n, e in self.drift if e.get("channel") == channel]

    def device_of_kind(self, kind: str) -> str | None:
        return next((d.name for d in self.run.devices if d.kind == kind), None)


def _drift_events(run: RunData) -> list[tuple[int, dict[str, Any]]]:
    """Drift events numbered 1… in order of detection: the run summary's, else (a run
    that never finished) the ``drift`` events of the event log, which carry the same."""
    summary = _dict(run.summary)
    if "drift_events" in summary:
        events = [e for e in _list(summary["drift_events"]) if isinstance(e, dict)]
    else:
        events = [e.data for e in run.events if e.kind == "drift" and isinstance(e.data, dict)]
    events.sort(key=lambda e: _finite(e.get("detected_t_s")) or 0.0)
    return list(enumerate(events, start=1))


def _section_run(ctx: _Context) -> tuple[bool, str]:
    run, info = ctx.run, ctx.run.info
    summary = _dict(run.summary)
    lost = [str(x) for x in _list(summary.get("lost_devices"))] or sorted(
        {str(e.device) for e in run.events if e.kind == "lost" and e.device}
    )
    recorded_s = max((float(np.nanmax(ch.t_s)) for ch in run.channels if len(ch)), default=0.0)
    samples = ", ".join(f"{_esc(k)}: {int(v):,}" for k, v in _dict(summary.get("samples")).items())
    clock = {
        "virtual": "virtual (scenario time runs as fast as the emulated devices allow)",
        "wall": "wall (real time)",
    }.get(info.clock_kind, info.clock_kind)
    items = [
        ("run", f"{info.id}"),
        ("status", f'<span class="badge status-{_esc(info.status)}">{_esc(info.status)}</span>'),
        ("started (UTC)", _esc(_utc(info.started_utc))),
        ("ended (UTC)", _esc(_utc(info.ended_utc))),
        ("wall time", _esc(f"{info.duration_s:.1f} s")),
        ("scenario time recorded", _esc(_clock(recorded_s))),
        ("clock", _esc(clock)),
        ("software", _esc(info.software_version)),
        ("host, process", _esc(f"{info.hostname}, pid {info.pid}")),
        ("samples", samples or _esc(f"{info.sample_count:,} in {info.channel_count} channels")),
        (
            "lost devices",
            _esc(", ".join(lost)) if lost else "none (every device answered throughout)",
        ),
    ]
    return True, _facts(items)


def _text_block(what: str, name: str, text: str, stored_sha: str) -> str:
    actual = _sha256(text)
    check = (
        "matches the stored SHA-256"
        if actual == stored_sha
        else f"does NOT match the stored SHA-256 (text hashes to {actual})"
    )
    return (
        f"<details><summary>{_esc(what)} file <code>{_esc(name)}</code> ({_esc(check)})"
        f"</summary><pre>{_esc(text)}</pre></details>"
    )


def _section_devices(ctx: _Context) -> tuple[bool, str]:
    run, info = ctx.run, ctx.run.info
    bench = _toml(run.bench_text)
    rows = [
        [
            _esc(d.name),
            _esc(d.kind),
            _esc(d.protocol),
            f"<code>{_esc(d.port)}</code>",
            _esc(d.identity.get("model") or "—"),
            _esc(d.identity.get("serial") or "—"),
            _esc(d.identity.get("firmware") or "—"),
        ]
        for d in run.devices
    ]
    emulated = [
        str(d.get("name"))
        for d in _list(bench.get("devices"))
        if isinstance(d, dict) and d.get("port") == "emulated"
    ]
    parts = [
        _facts(
            [
                ("bench", _esc(info.bench_name)),
                ("description", _esc(bench.get("description") or "—")),
                ("bench SHA-256", f"<code>{_esc(info.bench_sha256)}</code>"),
                (
                    "emulated devices",
                    _esc(", ".join(emulated)) if emulated else "none (all real hardware)",
                ),
            ]
        ),
        _table(
            ["device", "kind", "protocol", "port", "model", "serial", "firmware"],
            rows,
            table_id="devices-table",
            numeric_from=99,
        )
        if rows
        else _na("The run recorded no devices."),
        _text_block("bench", info.bench_name, run.bench_text, info.bench_sha256),
    ]
    return True, "".join(parts)


def _toml_value(value: Any) -> str:
    """A scenario value written back the way the TOML file spells it (JSON agrees with TOML
    on strings, numbers, booleans and arrays)."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):  # dates and times
        return str(value)


def _procedure_brief(procedure: _Procedure) -> str:
    keys = [k for k in procedure.table if k not in ("kind", "label")]
    settings = ", ".join(f"{k} = {_toml_value(procedure.table[k])}" for k in keys)
    return f"{procedure.label}: {procedure.kind}" + (f" ({settings})" if settings else "")


def _section_scenario(ctx: _Context) -> tuple[bool, str]:
    run, info = ctx.run, ctx.run.info
    scenario = _toml(run.scenario_text)
    procedures = (
        "<ul>" + "".join(f"<li>{_esc(_procedure_brief(p))}</li>" for p in ctx.procedures) + "</ul>"
        if ctx.procedures
        else "none (hand-written steps only)"
    )
    steps = len(_list(scenario.get("steps")))
    items = [
        ("scenario", _esc(info.scenario_name)),
        ("description", _esc(scenario.get("description") or "—")),
        ("duration", _esc(scenario.get("duration", "—"))),
        ("scenario SHA-256", f"<code>{_esc(info.scenario_sha256)}</code>"),
        ("procedures", procedures),
        ("steps", _esc(steps)),
    ]
    body = _facts(items) + _text_block(
        "scenario", info.scenario_name, run.scenario_text, info.scenario_sha256
    )
    return True, body


def _section_calibration(ctx: _Context) -> tuple[bool, str]:
    run, record = ctx.run, ctx.calibration
    mode = _bench_twin(run).get("calibration", "none")
    device = _pump_device(run)
    keys = _calibration_keys(run, device)
    params_block = (
        "<details><summary>twin parameters of this run (as stored with it)</summary><pre>"
        + _esc(json.dumps(_plain(run.twin_params), indent=2, ensure_ascii=False))
        + "</pre></details>"
    )
    if record is None:
        if mode == "latest":
            return True, (
                f'<p class="warn">The bench asks for the latest calibration of '
                f"<code>{_esc(' or '.join(keys) or device)}</code> "
                '([twin] calibration = "latest"), but '
                "no calibration record was found for it; the parameters below are what the "
                "twin used.</p>" + params_block
            )
        return True, (
            '<p class="calibration-none">nominal twin, no calibration '
            f"(the bench's [twin] calibration is {_esc(json.dumps(mode))})</p>" + params_block
        )
    matches = _calibration_matches(record, run.twin_params)
    if matches:
        status = (
            '<p class="ok">In force: every calibrated value is the value the twin of this '
            "run used.</p>"
        )
    elif matches is None:
        status = (
            '<p class="warn">Could not verify that this calibration was in force: a '
            "calibrated parameter is not among the twin parameters stored with the run.</p>"
        )
    else:
        status = (
            '<p class="warn">This calibration differs from the twin parameters stored with '
            "the run: the twin of this run did not use these values.</p>"
        )
    facts = _facts(
        [
            ("device", _esc(f"{device} ({record.device_key})")),
            ("version", _esc(record.version)),
            ("created (UTC)", _esc(_utc(record.created_utc))),
            ("fitted on run", _esc(record.run_id if record.run_id is not None else "—")),
            ("residual RMS before fit", _num(record.residual_rms_before)),
            ("residual RMS after fit", _num(record.residual_rms_after)),
            ("note", _esc(record.note or "—")),
        ]
    )
    rows = []
    for name, entry in record.params.items():
        rows.append(
            [
                f"<code>{_esc(name)}</code>",
                _num(entry.get("value"), 8),
                _num(entry.get("stderr"), 3),
                _num(_dotted(run.twin_params, name), 8),
            ]
        )
    table = _table(
        ["parameter", "calibrated value", "standard error", "value in this run's twin"],
        rows,
        table_id="calibration-table",
    )
    return True, status + facts + table + params_block


def _section_verdicts(ctx: _Context) -> tuple[bool, str]:
    verdicts = ctx.run.verdicts
    if not verdicts:
        status = ctx.run.info.status
        why = (
            "the scenario declares no measurements (no procedures)"
            if not ctx.procedures
            else f"none were stored (the run is {status}; analyses run when a run completes)"
        )
        return False, _na(f"No verdicts: {why}.")
    rows_by_name: dict[str, dict[str, VerdictRecord]] = {}
    for verdict in verdicts:
        rows_by_name.setdefault(verdict.measurement, {})[str(verdict.source)] = verdict
    rows, attrs = [], []
    for name, pair in rows_by_name.items():
        any_v = next(iter(pair.values()))
        rows.append(
            [
                f"<code>{_esc(name)}</code>",
                _esc(any_v.description or ""),
                _esc(_limits_text(any_v)),
                *(
                    _outcome_cell(
                        str(pair[s].outcome) if s in pair else None,
                        source=s,
                        value=_esc(_value_text(pair[s])) if s in pair else "",
                        badge=outcome_label(str(pair[s].outcome), pair[s].lower, pair[s].upper)
                        if s in pair
                        else None,
                    )
                    for s in _SOURCES
                ),
                _esc(_notes_text(pair)),
            ]
        )
        attrs.append(f'data-measurement="{_esc(name)}"')
    overall = {
        s: _overall(str(v.outcome) for v in verdicts if str(v.source) == s) for s in _SOURCES
    }
    head = (
        '<p class="overall">overall: real device '
        + _badge(overall["real"])
        + ", twin "
        + _badge(overall["twin"])
        + " (FAIL if any measurement fails, then UNSET, then MARGINAL)</p>"
    )
    table = _table(
        ["measurement", "what", "limits", "real device", "twin", "note"],
        rows,
        table_id="verdicts-table",
        numeric_from=99,
        row_attrs=attrs,
    )
    return True, head + table


def _notes_text(pair: Mapping[str, VerdictRecord]) -> str:
    notes = {s: pair[s].note for s in _SOURCES if s in pair and pair[s].note}
    if len(set(notes.values())) == 1 and len(notes) == len(pair):
        return next(iter(notes.values()))  # the same note on both sides: once
    return "; ".join(f"{s}: {note}" for s, note in notes.items())


def _badge(outcome: str | None) -> str:
    if outcome is None:
        return '<span class="badge">no verdicts</span>'
    return f'<span class="badge outcome {_esc(outcome)}">{_esc(outcome)}</span>'


def _limits_text(verdict: VerdictRecord) -> str:
    def fmt(value: float | None) -> str:
        return "—" if value is None else f"{value:g}"

    if verdict.lower is None and verdict.upper is None:
        return "informational (no limit declared)"
    text = f"[{fmt(verdict.lower)}, {fmt(verdict.upper)}] {verdict.units}".rstrip()
    if verdict.marginal_lower is not None or verdict.marginal_upper is not None:
        text += f"; marginal outside [{fmt(verdict.marginal_lower)}, {fmt(verdict.marginal_upper)}]"
    return text


def _value_text(verdict: VerdictRecord) -> str:
    if verdict.value is None:
        return "—"
    return f"{verdict.value:.4g} {verdict.units}".rstrip()


def _flow_note(procedure: _Procedure) -> str:
    if procedure.origin == "recomputed":
        return (
            " The run stored no analysis for this procedure; the curves were computed by the "
            "report from the stored balance channels (medtwin.hil.analysis.iec60601_2_24)."
        )
    return ""


def _errors_html(procedure: _Procedure, sources: Iterable[str] | None = None) -> str:
    """The analysis errors of the procedure (of ``sources`` only, when given)."""
    wanted = set(_SOURCES if sources is None else sources)
    return "".join(
        f'<p class="warn">{_esc(procedure.label)}, {_esc(source)}: could not be analysed: '
        f"{_esc(message)}</p>"
        for source, message in sorted(procedure.errors.items())
        if source in wanted
    )


def _name(base: str, index: int, count: int) -> str:
    return base if count == 1 else f"{base}-{index + 1}"


def _not_analysed(procedure: _Procedure, run: RunData) -> str:
    if procedure.errors:
        return _errors_html(procedure)
    return _na(
        f"No analysis of {procedure.label} ({procedure.kind}): the run is {run.info.status}, "
        "and analyses run when a run completes."
    )


def _per_procedure(
    kind: str,
    part: Callable[[_Context, _Procedure, int, int], str | None],
    *,
    absent: str,
    note: str = "",
) -> Callable[[_Context], tuple[bool, str]]:
    """The builder of a section with one part per procedure of ``kind`` (in run order),
    then ``note``.

    ``part(ctx, procedure, index, count)`` renders one procedure, or gives None when the
    procedure has no analysis to show (its part then says why). A run without such a
    procedure has no section; ``absent`` says so.
    """

    def build(ctx: _Context) -> tuple[bool, str]:
        procedures = ctx.of_kind(kind)
        if not procedures:
            return False, _na(absent)
        parts = []
        for index, procedure in enumerate(procedures):
            html_part = part(ctx, procedure, index, len(procedures))
            parts.append(_not_analysed(procedure, ctx.run) if html_part is None else html_part)
        return True, "".join(parts) + note

    return build


def _analysed_sides(procedure: _Procedure) -> list[str]:
    return [s for s in _SOURCES if s in procedure.analysis]


def _flow_figure(
    ctx: _Context,
    figure: Figure,
    procedure: _Procedure,
    *,
    section: str,
    title: str,
    index: int,
    count: int,
    caption: str,
) -> str:
    """Add the ``section`` figure of one flow procedure; its HTML, captioned with the
    procedure's label, ``caption`` (HTML) and the note on how its flow was analysed."""
    item = ctx.figures.add(
        figure,
        name=_name(section, index, count),
        title=f"{title} {procedure.label}",
        section=section,
    )
    text = f"{_esc(procedure.label)}: {caption}" + _esc(_flow_note(procedure))
    return _figure_html(item, text)


def _startup_part(ctx: _Context, procedure: _Procedure, index: int, count: int) -> str | None:
    curves = {
        s: _dict(procedure.analysis[s].get("startup")) for s in _SOURCES if s in procedure.analysis
    }
    curves = {s: c for s, c in curves.items() if _list(c.get("t_min"))}
    if not curves:
        return None
    any_analysis = next(iter(procedure.analysis.values()))
    rate = _finite(any_analysis.get("rate_ml_h"))
    interval = _finite(any_analysis.get("interval_min"))
    lower, upper = _accuracy_limits(procedure, ctx.run.verdicts)
    figure, (ax,) = ctx.figures.new(4.2)
    for source, (colour, style) in _SOURCE_STYLES.items():
        if source in curves:
            t_min = _floats(curves[source]["t_min"])
            flow = _floats(curves[source]["flow_ml_h"])
            ax.plot(t_min, flow, color=colour, ls=style, lw=1.0, label=f"{source}: Q_i")
    if rate is not None:
        ax.axhline(rate, color="#333333", lw=0.9, label=f"set rate r = {rate:g} mL/h")
        label: str | None = f"declared accuracy [{_num(lower)}, {_num(upper)}] %"
        for limit in (lower, upper):
            if limit is not None:
                ax.axhline(
                    rate * (1 + limit / 100.0), color=_LIMIT_COLOUR, ls=":", lw=1.0, label=label
                )
                label = None
    ax.set_xlabel("time after the start (min)")
    ax.set_ylabel("flow Q_i (mL/h)")
    title = f"Start-up curve, r = {_num(rate)} mL/h, S = {_num(interval)} min"
    ax.set_title(title + f" ({procedure.label})")
    ax.legend(loc="lower right")
    missing = [s for s in _SOURCES if s not in curves]
    return _flow_figure(
        ctx,
        figure,
        procedure,
        section="startup",
        title="start-up curve",
        index=index,
        count=count,
        caption="flow Q_i = 60·ΔW/(S·d) per sample interval S over the start-up period "
        "(IEC 60601-2-24:1998 50.102), real device and twin.",
    ) + _errors_html(procedure, missing)


def _trumpet_windows(analysis: Mapping[str, Any]) -> dict[float, dict[str, Any]]:
    windows = _dict(_dict(analysis.get("trumpet")).get("windows"))
    out: dict[float, dict[str, Any]] = {}
    for key, value in windows.items():
        try:
            out[float(key)] = _dict(value)
        except ValueError:
            continue
    return dict(sorted(out.items()))


def _window_limits(
    verdicts: Sequence[VerdictRecord], window_min: float
) -> tuple[float | None, float | None]:
    names = (f"ep_max_{window_min:g}min", f"ep_min_{window_min:g}min")
    lows = [v.lower for v in verdicts if v.measurement in names and v.lower is not None]
    highs = [v.upper for v in verdicts if v.measurement in names and v.upper is not None]
    return (min(lows) if lows else None, max(highs) if highs else None)


def _trumpet_part(ctx: _Context, procedure: _Procedure, index: int, count: int) -> str | None:
    sides = {
        s: procedure.analysis[s]
        for s in _SOURCES
        if s in procedure.analysis and _trumpet_windows(procedure.analysis[s])
    }
    if not sides:
        return None
    lower, upper = _accuracy_limits(procedure, ctx.run.verdicts)
    figure, (ax,) = ctx.figures.new(4.6)
    all_windows: set[float] = set()
    for source, (colour, style) in _SOURCE_STYLES.items():
        if source not in sides:
            continue
        windows = _trumpet_windows(sides[source])
        p = np.array(list(windows))
        all_windows.update(windows)
        ep_max = _floats([w.get("ep_max") for w in windows.values()])
        ep_min = _floats([w.get("ep_min") for w in windows.values()])
        ax.plot(p, ep_max, color=colour, ls=style, marker="^", lw=1.1, label=f"{source}: Ep(max)")
        ax.plot(p, ep_min, color=colour, ls=style, marker="v", lw=1.1, label=f"{source}: Ep(min)")
        mean = _finite(_dict(sides[source].get("trumpet")).get("mean_error_percent"))
        if mean is not None:
            ax.axhline(mean, color=colour, ls=":", lw=1.0, label=f"{source}: A = {mean:+.3g} %")
    if lower is not None or upper is not None:
        for limit in (lower, upper):
            if limit is not None:
                ax.axhline(limit, color=_LIMIT_COLOUR, ls="--", lw=1.2)
        ax.plot(
            [],
            [],
            color=_LIMIT_COLOUR,
            ls="--",
            label=f"declared accuracy [{_num(lower)}, {_num(upper)}] %",
        )
    windows_sorted = sorted(all_windows)
    declared_p, declared_limit = [], []
    for window in windows_sorted:
        for limit in _window_limits(ctx.run.verdicts, window):
            if limit is not None:
                declared_p.append(window)
                declared_limit.append(limit)
    if declared_p:
        ax.plot(
            declared_p,
            declared_limit,
            ls="none",
            marker="_",
            markersize=14,
            color=_LIMIT_COLOUR,
            label="declared window limits",
        )
    ax.axhline(0.0, color="#555555", lw=0.6)
    ax.set_xticks(windows_sorted)
    ax.set_xlabel("observation window P (min)")
    ax.set_ylabel("flow error (%)")
    any_trumpet = _dict(next(iter(sides.values())).get("trumpet"))
    period = _list(any_trumpet.get("analysis_period_min"))
    period_text = f"{_num(period[0])}–{_num(period[1])} min" if len(period) == 2 else "?"
    ax.set_title(
        f"Trumpet curve, r = {_num(any_trumpet.get('rate_ml_h'))} mL/h, analysis period "
        f"{period_text} ({procedure.label})"
    )
    ax.legend(loc="best", ncols=2)
    figure_html = _flow_figure(
        ctx,
        figure,
        procedure,
        section="trumpet",
        title="trumpet curve",
        index=index,
        count=count,
        caption="the largest and smallest mean flow error over any window of P minutes in the "
        "analysis period (IEC 60601-2-24:1998 50.102, 2012 201.12.1), real device and twin, "
        "with the declared accuracy.",
    )
    return figure_html + _trumpet_table(sides, windows_sorted) + _errors_html(procedure)


def _trumpet_table(sides: Mapping[str, Mapping[str, Any]], windows: Sequence[float]) -> str:
    per_side = {s: _trumpet_windows(a) for s, a in sides.items()}
    headers = ["P (min)"]
    for source in sides:
        headers += [f"{source} Ep(max) %", f"{source} Ep(min) %"]
    rows = []
    for window in windows:
        row = [f"{window:g}"]
        for source in sides:
            entry = per_side[source].get(window, {})
            row += [_num(entry.get("ep_max"), signed=True), _num(entry.get("ep_min"), signed=True)]
        rows.append(row)
    mean_row = ["A (mean error)"]
    flow_row = ["mean flow (mL/h)"]
    for source in sides:
        trumpet = _dict(sides[source].get("trumpet"))
        mean_row += [_num(trumpet.get("mean_error_percent"), signed=True), ""]
        flow_row += [_num(trumpet.get("mean_flow_ml_h"), 6), ""]
    notes = {str(_dict(a.get("trumpet")).get("resampling_note") or "") for a in sides.values()} - {
        ""
    }
    table = _table(headers, [*rows, mean_row, flow_row], table_id="trumpet-table")
    return table + "".join(f'<p class="note">{_esc(n)}</p>' for n in sorted(notes))


def _section_flow(ctx: _Context) -> tuple[bool, str]:
    balance = ctx.device_of_kind("balance")
    flow_name, mass_name = f"{balance}.flow_ml_h", f"{balance}.mass_g"
    if balance is None or not _has_data(_channel(ctx.run, flow_name, "real")):
        return False, _na("No balance flow recorded in this run: no flow or residual plot.")
    plotted = {flow_name, mass_name}
    pressure_names = set(_pressure_channels(ctx.run))
    # Drift on any other channel (a pump counter, say) gets a residual panel here too, so
    # every drift event is marked on some figure.
    others = sorted(
        {
            str(e.get("channel"))
            for _, e in ctx.drift
            if e.get("channel") not in plotted | pressure_names
        }
    )
    panels = [flow_name, mass_name, *others]
    units = {ch.name: ch.unit for ch in ctx.run.channels}
    figure, axes = ctx.figures.new(2.2 + 2.0 * len(panels), rows=1 + len(panels))
    top = axes[0]
    _plot_pair(top, ctx.run, flow_name, ctx.axis)
    for procedure in ctx.of_kind(_FLOW_KIND):
        start = _finite(getattr(procedure.parsed, "at", None)) or 0.0
        period = getattr(procedure.parsed, "analysis_period", None)
        if period is not None:
            top.axvspan(
                ctx.axis(start + period[0]),
                ctx.axis(start + period[1]),
                color="#2ca02c",
                alpha=0.08,
                lw=0,
                label=f"analysis period ({procedure.label})",
            )
    top.set_ylabel("flow (mL/h)")
    top.set_title(f"Flow from the balance ({balance}) and real − twin residuals")
    top.legend(loc="lower right")
    _mark_drift(top, ctx.drift_on(flow_name), ctx.axis)
    for ax, name in zip(axes[1:], panels, strict=True):
        if not _plot_residual(ax, ctx.run, name, units.get(name, ""), ctx.axis, ctx.drift_on(name)):
            ax.text(0.5, 0.5, f"{name}: no residual", transform=ax.transAxes, ha="center")
    _drift_legend(axes[-1], [e for name in panels for e in ctx.drift_on(name)])
    axes[-1].set_xlabel(ctx.axis.label)
    item = ctx.figures.add(figure, name="flow", title="flow and residuals", section="flow")
    marked = [n for n, e in ctx.drift if e.get("channel") in panels]
    caption = (
        "Flow from consecutive balance readings, real device and twin; below, the residual "
        "real − twin of the flow and of the balance mass"
        + (f" and of {', '.join(others)}" if others else "")
        + "."
        + _drift_caption(marked)
    )
    return True, _figure_html(item, _esc(caption))


def _pressure_channels(run: RunData) -> list[str]:
    """Line-pressure channels with data: the bench I/O's transducer first, then the pump's."""
    names = []
    for kind in ("bench-io", "pump"):
        for device in run.devices:
            if device.kind == kind:
                name = f"{device.name}.pressure_mmhg"
                if _has_data(_channel(run, name, "real")) or _has_data(_channel(run, name, "twin")):
                    names.append(name)
    return names


def _occlusions(run: RunData, end_s: float) -> list[tuple[float, float]]:
    spans, start = [], None
    for event in run.events:
        action = _dict(event.data).get("action") if event.kind == "command" else None
        if action == "occlude" and start is None:
            start = event.t_s
        elif action == "release" and start is not None:
            spans.append((start, event.t_s))
            start = None
    if start is not None:
        spans.append((start, end_s))
    return spans


def _alarm_changes(run: RunData) -> list[tuple[float, str, list[str], list[str]]]:
    """(t_s, device, raised, cleared) for each alarm event, from the alarm sets."""
    previous: dict[str, set[str]] = {}
    out = []
    for event in run.events:
        if event.kind != "alarm":
            continue
        device = event.device or ""
        now = {str(a) for a in _list(_dict(event.data).get("alarms"))}
        before = previous.get(device, set())
        out.append((event.t_s, device, sorted(now - before), sorted(before - now)))
        previous[device] = now
    return out


def _section_pressure(ctx: _Context) -> tuple[bool, str]:
    names = _pressure_channels(ctx.run)
    if not names:
        return False, _na("No line pressure recorded in this run.")
    name = names[0]
    figure, (ax, ax_res) = ctx.figures.new(5.6, rows=2)
    _plot_pair(ax, ctx.run, name, ctx.axis)
    end_s = max((float(np.nanmax(ch.t_s)) for ch in ctx.run.channels if len(ch)), default=0.0)
    spans = _occlusions(ctx.run, end_s)
    for i, (start, stop) in enumerate(spans):
        ax.axvspan(
            ctx.axis(start),
            ctx.axis(stop),
            color="#7f7f7f",
            alpha=0.15,
            lw=0,
            label="line occluded" if i == 0 else None,
        )
    changes = _alarm_changes(ctx.run)
    trans = blended_transform_factory(ax.transData, ax.transAxes)
    raised_label = cleared_label = True
    for t_s, device, raised, cleared in changes:
        if raised:
            ax.axvline(
                ctx.axis(t_s),
                color=_LIMIT_COLOUR,
                lw=1.2,
                label="alarm raised" if raised_label else None,
            )
            ax.text(
                ctx.axis(t_s),
                0.02,
                f" {device}: {', '.join(raised)}",
                transform=trans,
                color=_LIMIT_COLOUR,
                rotation=90,
                va="bottom",
                ha="right",
                fontsize=7,
            )
            raised_label = False
        if cleared and not raised:
            ax.axvline(
                ctx.axis(t_s),
                color="#7f7f7f",
                ls=":",
                lw=1.0,
                label="alarm cleared" if cleared_label else None,
            )
            cleared_label = False
    _mark_drift(ax, ctx.drift_on(name), ctx.axis)
    ax.set_ylabel("pressure (mmHg)")
    ax.set_title(f"Line pressure ({name})")
    ax.legend(loc="best")
    if not _plot_residual(ax_res, ctx.run, name, "mmHg", ctx.axis, ctx.drift_on(name)):
        ax_res.text(0.5, 0.5, "no residual", transform=ax_res.transAxes, ha="center")
    _drift_legend(ax_res, ctx.drift_on(name))
    ax_res.set_xlabel(ctx.axis.label)
    item = ctx.figures.add(figure, name="pressure", title="line pressure", section="pressure")
    raised_count = sum(1 for c in changes if c[2])
    caption = (
        f"Line pressure {name}, real device and twin, with the real − twin residual below. "
        + (
            f"{len(spans)} occlusion(s) shaded (occlude → release). "
            if spans
            else "The line was never occluded. "
        )
        + (f"{raised_count} alarm(s) raised (red)." if raised_count else "No alarm was raised.")
        + _drift_caption([n for n, _ in ctx.drift_on(name)])
    )
    return True, _figure_html(item, _esc(caption))


def _drift_caption(numbers: Sequence[int]) -> str:
    if not numbers:
        return " No drift event on these channels."
    return (
        f" Drift events {', '.join(f'#{n}' for n in numbers)} are marked: shaded from the "
        "estimated onset (dashed) to the detection (solid)."
    )


_OCCLUSION_ROWS = (
    ("occlusion_s", "line occluded at", "time"),
    ("release_s", "line reopened at", "time"),
    ("baseline_pressure_mmhg", "baseline pressure (mmHg)", "num"),
    ("alarm_s", "alarm at", "time"),
    ("time_to_alarm_s", "time to alarm (s)", "num"),
    ("pressure_at_alarm_mmhg", "pressure at alarm (mmHg)", "num"),
    ("peak_pressure_mmhg", "peak pressure while occluded (mmHg)", "num"),
    ("bolus_end_s", "bolus collected until", "time"),
    ("bolus_mass_g", "unintended bolus mass (g)", "num"),
    ("bolus_volume_ml", "unintended bolus volume (mL)", "num"),
)


_OCCLUSION_NOTE = (
    '<p class="note">Occlusion test of IEC 60601-2-24 (2012 edition, occlusion clause under '
    "201.12.4.4; the sub-clause number is not confirmed). The bolus ends when the pressure is "
    "back within 5 mmHg of the baseline (our reading of “until the pressure is reduced”). "
    "Verdicts against the declared maxima are in the verdict table.</p>"
)


def _occlusion_part(ctx: _Context, procedure: _Procedure, index: int, count: int) -> str | None:
    sides = _analysed_sides(procedure)
    if not sides:
        return None
    rows = []
    for key, label, kind in _OCCLUSION_ROWS:
        row = [_esc(label)]
        for source in sides:
            value = procedure.analysis[source].get(key)
            if value is None and key in ("alarm_s", "time_to_alarm_s"):
                row.append("no alarm before the release")
            else:
                row.append(_clock(value) if kind == "time" else _num(value, 5))
        rows.append(row)
    table = _table(["", *sides], rows, table_id="occlusion-table")
    return f"<h3>{_esc(procedure.label)}</h3>{table}{_errors_html(procedure)}"


_BOLUS_NOTE = (
    '<p class="note">Bolus accuracy after IEC 60601-2-24:1998 50.106: each bolus weighed on '
    "the balance (basal delivery subtracted), deviation 100·(W/d − V)/V.</p>"
)


def _bolus_part(ctx: _Context, procedure: _Procedure, index: int, count: int) -> str | None:
    sides = _analysed_sides(procedure)
    if not sides:
        return None
    n_boluses = max(len(_list(procedure.analysis[s].get("measured_mass_g"))) for s in sides)
    expected = _finite(procedure.analysis[sides[0]].get("expected_ml"))
    headers = ["bolus", "set volume (mL)"]
    for source in sides:
        headers += [f"{source} mass (g)", f"{source} deviation (%)"]
    rows = []
    for i in range(n_boluses):
        row = [str(i + 1), _num(expected)]
        for source in sides:
            masses = _list(procedure.analysis[source].get("measured_mass_g"))
            deviations = _list(procedure.analysis[source].get("deviation_percent"))
            row.append(_num(masses[i] if i < len(masses) else None, 5))
            row.append(_num(deviations[i] if i < len(deviations) else None, signed=True))
        rows.append(row)
    for key, label in (
        ("mean_deviation_percent", "mean deviation"),
        ("worst_deviation_percent", "worst deviation"),
    ):
        row = [label, ""]
        for source in sides:
            row += ["", _num(procedure.analysis[source].get(key), signed=True)]
        rows.append(row)
    table = _table(headers, rows, table_id="bolus-table")
    return f"<h3>{_esc(procedure.label)}</h3>{table}{_errors_html(procedure)}"


def _section_drift(ctx: _Context) -> tuple[bool, str]:
    if not ctx.drift:
        return True, (
            '<p class="ok" id="no-drift">No drift: the device behaved like its twin on every '
            "compared channel.</p>"
        )
    rows = []
    for number, event in ctx.drift:
        rel = _finite(event.get("magnitude_rel"))
        magnitude = f"{_num(event.get('magnitude'), signed=True)} {_esc(event.get('unit', ''))}"
        if rel is not None:
            magnitude += f" ({100 * rel:+.3g} %)"
        rows.append(
            [
                f"#{number}",
                f"<code>{_esc(event.get('channel'))}</code>",
                "real above twin" if event.get("direction") == "high" else "real below twin",
                _esc(event.get("statistic")),
                _clock(event.get("onset_t_s")),
                _clock(event.get("detected_t_s")),
                magnitude,
                f"{_num(event.get('value'))} / {_num(event.get('threshold'))}",
                _esc(event.get("n_samples", "—")),
            ]
        )
    head = (
        f'<p class="fail" id="drift-found">DRIFT: {len(ctx.drift)} drift event(s); the device '
        "does not behave like its twin.</p>"
    )
    table = _table(
        [
            "#",
            "channel",
            "direction",
            "detector",
            "onset",
            "detected",
            "magnitude (mean residual)",
            "statistic / threshold",
            "samples",
        ],
        rows,
        table_id="drift-table",
        numeric_from=4,
    )
    return True, head + table


def _computed_stats(run: RunData) -> dict[str, dict[str, Any]]:
    """Residual statistics from the channels, for a run whose summary has none."""
    out: dict[str, dict[str, Any]] = {}
    for channel in run.channels:
        if channel.source != "real" or channel.name in out:
            continue
        residual = _residual(run, channel.name)
        if residual is None:
            continue
        values = residual[1]
        ok = values[np.isfinite(values)]
        n = int(ok.size)
        out[channel.name] = {
            "unit": channel.unit,
            "n": n,
            "n_missing": int(values.size - n),
            "mean": float(np.mean(ok)) if n else None,
            "sd": float(np.std(ok, ddof=1)) if n > 1 else None,
            "rms": float(np.sqrt(np.mean(ok**2))) if n else None,
            "max_abs": float(np.max(np.abs(ok))) if n else None,
            "sigma": None,
            "sigma_source": "not recorded",
        }
    return out


def _residual_stats(run: RunData) -> tuple[dict[str, dict[str, Any]], bool]:
    channels = _dict(_dict(run.summary).get("channels"))
    if channels:
        return {str(k): _dict(v) for k, v in channels.items()}, True
    return _computed_stats(run), False


def _section_residuals(ctx: _Context) -> tuple[bool, str]:
    stats, stored = _residual_stats(ctx.run)
    if not stats:
        return False, _na("No channel has both a real and a twin series: no residuals.")
    rows = [
        [
            f"<code>{_esc(name)}</code>",
            _esc(s.get("unit", "")),
            _esc(f"{int(s.get('n') or 0):,}"),
            _esc(f"{int(s.get('n_missing') or 0):,}"),
            _num(s.get("mean"), signed=True),
            _num(s.get("sd")),
            _num(s.get("rms")),
            _num(s.get("max_abs")),
            f"{_num(s.get('sigma'))} ({_esc(s.get('sigma_source', '—'))})",
        ]
        for name, s in stats.items()
    ]
    note = (
        "Residual r = real − twin over the valid samples, as the comparator computed it during "
        "the run; σ is the noise level its CUSUM and EWMA detectors used."
        if stored
        else "The run stored no comparator statistics; these were computed by the report from "
        "the stored channels."
    )
    table = _table(
        ["channel", "unit", "samples", "missing", "mean", "sd", "rms", "max |r|", "σ used"],
        rows,
        table_id="residuals-table",
        numeric_from=2,
    )
    return True, table + f'<p class="note">{_esc(note)}</p>'


def _section_events(ctx: _Context) -> tuple[bool, str]:
    events = ctx.run.events
    if not events:
        return True, _na("The run recorded no events.")
    counts: dict[str, int] = {}
    for event in events:
        counts[event.kind] = counts.get(event.kind, 0) + 1
    head = (
        "<p>"
        + ", ".join(f"{n} {_esc(kind)}" for kind, n in sorted(counts.items()))
        + f" event(s); {counts.get('fault', 0)} fault(s), {counts.get('lost', 0)} lost "
        "device(s).</p>"
    )
    rows = [
        [
            _clock(e.t_s),
            f'<td><span class="kind kind-{_esc(e.kind)}">{_esc(e.kind)}</span></td>',
            _esc(e.device or e.channel or ""),
            _esc(e.message),
        ]
        for e in events
    ]
    table = _table(
        ["scenario time", "kind", "device / channel", "message"],
        rows,
        table_id="events-table",
        numeric_from=99,
    )
    return True, head + table


_BUILDERS = {
    "run": _section_run,
    "devices": _section_devices,
    "scenario": _section_scenario,
    "calibration": _section_calibration,
    "verdicts": _section_verdicts,
    "startup": _per_procedure(
        _FLOW_KIND,
        _startup_part,
        absent="No IEC 60601-2-24 flow procedure in this run: no start-up curve.",
    ),
    "trumpet": _per_procedure(
        _FLOW_KIND,
        _trumpet_part,
        absent="No IEC 60601-2-24 flow procedure in this run: no trumpet curve.",
    ),
    "flow": _section_flow,
    "pressure": _section_pressure,
    "occlusion": _per_procedure(
        _OCCLUSION_KIND,
        _occlusion_part,
        absent="No occlusion procedure in this run.",
        note=_OCCLUSION_NOTE,
    ),
    "bolus": _per_procedure(
        _BOLUS_KIND, _bolus_part, absent="No bolus procedure in this run.", note=_BOLUS_NOTE
    ),
    "drift": _section_drift,
    "residuals": _section_residuals,
    "events": _section_events,
}


# --------------------------------------------------------------------------- HTML page

_CSS = """
:root { --pass:#1a7f37; --pass-bg:#dafbe1; --fail:#cf222e; --fail-bg:#ffebe9;
  --marginal:#9a6700; --marginal-bg:#fff8c5; --unset:#57606a; --unset-bg:#eaeef2; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
  color:#1f2328; margin: 0 auto; max-width: 1000px; padding: 1.5em; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #d0d7de; padding-bottom: .2em;
  margin-top: 2em; }
h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
th, td { border: 1px solid #d0d7de; padding: .25em .55em; text-align: left;
  vertical-align: top; }
thead th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.facts th { background: #f6f8fa; width: 14em; font-weight: 600; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: .9em; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; white-space: pre-wrap; }
details { margin: .6em 0; } summary { cursor: pointer; }
figure { margin: .8em 0; } figure img { max-width: 100%; height: auto; }
figcaption { font-size: .9em; color: #57606a; }
.badge { display: inline-block; padding: 0 .45em; border-radius: .3em; font-weight: 600;
  font-size: .85em; background: var(--unset-bg); color: var(--unset); }
.PASS .badge, .badge.PASS, .status-completed { background: var(--pass-bg); color: var(--pass); }
.FAIL .badge, .badge.FAIL, .status-aborted, .status-interrupted {
  background: var(--fail-bg); color: var(--fail); }
.MARGINAL .badge, .badge.MARGINAL, .status-degraded {
  background: var(--marginal-bg); color: var(--marginal); }
td.outcome.PASS { background: #f3fcf5; } td.outcome.FAIL { background: #fff5f4; }
td.outcome.MARGINAL { background: #fffcea; }
p.na { color: #57606a; font-style: italic; }
p.ok { color: var(--pass); font-weight: 600; }
p.fail { color: var(--fail); font-weight: 600; }
p.warn { color: var(--marginal); font-weight: 600; }
p.note { font-size: .9em; color: #57606a; }
.kind { font-family: ui-monospace, monospace; font-size: .85em; }
.kind-alarm, .kind-fault, .kind-lost, .kind-drift { color: var(--fail); font-weight: 600; }
nav ol { columns: 2; font-size: .92em; }
footer { margin-top: 3em; font-size: .85em; color: #57606a; }
@media print { body { max-width: none; } nav { display: none; } details { display: block; }
  h2 { break-after: avoid; } figure, table { break-inside: avoid; } }
"""


def _headline(ctx: _Context, verdict_outcomes: Mapping[str, str | None]) -> str:
    info = ctx.run.info
    drift = (
        f'<span class="badge FAIL">DRIFT ({len(ctx.drift)})</span>'
        if ctx.drift
        else '<span class="badge PASS">no drift</span>'
    )
    return (
        '<p class="headline">'
        f'status <span class="badge status-{_esc(info.status)}">{_esc(info.status)}</span> · '
        f"real device {_badge(verdict_outcomes['real'])} · "
        f"twin {_badge(verdict_outcomes['twin'])} · {drift}</p>"
    )


def _page(ctx: _Context, title: str, sections: Sequence[ReportSection]) -> str:
    info = ctx.run.info
    outcomes = {
        s: _overall(str(v.outcome) for v in ctx.run.verdicts if str(v.source) == s)
        for s in _SOURCES
    }
    nav = "".join(
        f'<li><a href="#{s.key}">{_esc(s.title)}</a>{"" if s.applies else " (n/a)"}</li>'
        for s in sections
    )
    body = "".join(
        f'<section id="{s.key}" data-applies="{str(s.applies).lower()}">'
        f"<h2>{_esc(s.title)}</h2>{s.body_html}</section>"
        for s in sections
    )
    generator = info.software_version if info.software_version else "medtwin"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="{_esc(_generator())}">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_esc(title)}</h1>"
        f"<p>bench <strong>{_esc(info.bench_name)}</strong>, scenario "
        f"<strong>{_esc(info.scenario_name)}</strong>, started {_esc(_utc(info.started_utc))}, "
        f"recorded by {_esc(generator)}</p>"
        f"{_headline(ctx, outcomes)}<nav><ol>{nav}</ol></nav></header>"
        f"<main>{body}</main>"
        f"<footer>Report of run {info.id} by {_esc(_generator())}. Every number is "
        "taken from the run store; the figures are embedded, the file needs nothing else."
        "</footer></body></html>\n"
    )


# --------------------------------------------------------------------------- public API


def _summary(
    ctx: _Context, sections: Sequence[ReportSection], figures: Sequence[ReportFigure]
) -> dict[str, Any]:
    run, info = ctx.run, ctx.run.info
    stats, stored = _residual_stats(run)
    counts: dict[str, int] = {}
    for event in run.events:
        counts[event.kind] = counts.get(event.kind, 0) + 1
    record = ctx.calibration
    calibration = None
    if record is not None:
        calibration = {
            "device_key": record.device_key,
            "version": record.version,
            "created_utc": record.created_utc.isoformat(),
            "run_id": record.run_id,
            "params": record.params,
            "residual_rms_before": record.residual_rms_before,
            "residual_rms_after": record.residual_rms_after,
            "note": record.note,
            "matches_run_twin": _calibration_matches(record, run.twin_params),
        }
    document = {
        "format": REPORT_FORMAT,
        "format_version": REPORT_FORMAT_VERSION,
        "generator": _generator(),
        "run": info.as_json(),
        "bench": {"name": info.bench_name, "sha256": info.bench_sha256},
        "scenario": {"name": info.scenario_name, "sha256": info.scenario_sha256},
        "devices": [d.as_json() for d in run.devices],
        "calibration": calibration,
        "twin_params": run.twin_params,
        "outcome": {
            s: _overall(str(v.outcome) for v in run.verdicts if str(v.source) == s)
            for s in _SOURCES
        },
        "verdicts": [v.as_json() for v in run.verdicts],
        "drift": bool(ctx.drift),
        "drift_events": [e for _, e in ctx.drift],
        "residuals": {"source": "run" if stored else "report", "channels": stats},
        "analysis": [
            {
                "kind": p.kind,
                "label": p.label,
                "origin": p.origin,
                "analysis": p.analysis,
                "errors": p.errors,
            }
            for p in ctx.procedures
        ],
        "events": counts,
        "lost_devices": _list(_dict(run.summary).get("lost_devices")),
        "sections": [{"key": s.key, "title": s.title, "applies": s.applies} for s in sections],
        "figures": [
            {"name": f.name, "file": f.filename, "title": f.title, "section": f.section}
            for f in figures
        ],
    }
    plain: dict[str, Any] = _plain(document)
    return plain


def build_report(run: RunData, *, calibration: CalibrationRecord | None = None) -> Report:
    """Build the report of one stored run in memory.

    Parameters
    ----------
    run : RunData
        From :meth:`medtwin.hil.store.RunStore.load_run`.
    calibration : CalibrationRecord, optional
        The calibration the run's twin used (:func:`calibration_in_force` finds it); None
        for a nominal twin.

    Returns
    -------
    Report
        Sections, figures (PNG bytes), the summary dict and the HTML document.

    Notes
    -----
    Nothing in a stored run makes this fail: an analysis that cannot be done is reported
    in its section (with the reason) instead of hiding the rest of the report.
    """
    info = run.info
    title = f"medtwin run {info.id}: {info.scenario_name} on {info.bench_name}"
    ctx = _Context(
        run=run,
        calibration=calibration,
        procedures=_procedures(run),
        drift=_drift_events(run),
        figures=_Figures(info.id),
        axis=_time_axis(run),
    )
    sections = []
    with matplotlib.style.context(["default", _STYLE]):
        for key, heading in SECTIONS:
            applies, body = _BUILDERS[key](ctx)
            sections.append(ReportSection(key, heading, applies, body))
    figures = tuple(ctx.figures.items)
    return Report(
        run_id=info.id,
        title=title,
        sections=tuple(sections),
        figures=figures,
        summary=_summary(ctx, sections, figures),
        html=_page(ctx, title, sections),
    )


def _check_target(path: Path) -> None:
    if path.is_dir():
        raise ConfigurationError(f"{path} is a directory; name a file", source=str(path))


def save_report(report: Report, out_html: Path, *, out_dir: Path | None = None) -> ReportFiles:
    """Write a built report: the HTML, and with ``out_dir`` the PNGs and ``summary.json``.

    Parameters
    ----------
    report : Report
        From :func:`build_report`.
    out_html : Path
        The HTML file; its directory must exist unless it is ``out_dir``. An existing
        file is replaced.
    out_dir : Path, optional
        Directory for ``<figure>.png`` and ``summary.json`` (created when missing).

    Raises
    ------
    ConfigurationError
        A path that cannot be written (naming it); nothing is left behind.
    """
    out_html = Path(out_html)
    _check_target(out_html)
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise ConfigurationError(f"{out_dir} exists and is not a directory", source=str(out_dir))
    inside = out_dir is not None and out_html.parent.resolve() == out_dir.resolve()
    if not inside and not out_html.parent.is_dir():
        raise ConfigurationError(
            f"the directory {out_html.parent} does not exist", source=str(out_html)
        )
    pngs: list[Path] = []
    summary_json: Path | None = None
    batch = FileBatch()
    try:
        if out_dir is not None:
            batch.mkdir(out_dir)
            for figure in report.figures:
                target = out_dir / figure.filename
                _check_target(target)
                batch.add(target, figure.png)
                pngs.append(target)
            summary_json = out_dir / "summary.json"
            _check_target(summary_json)
            text = json.dumps(report.summary, indent=2, ensure_ascii=False, allow_nan=False)
            batch.add(summary_json, (text + "\n").encode("utf-8"))
        batch.add(out_html, report.html.encode("utf-8"))
        batch.commit()
    except BaseException:
        batch.discard()
        raise
    return ReportFiles(html=out_html, pngs=tuple(pngs), summary_json=summary_json)


def write_report(
    run: RunData,
    out_html: Path,
    *,
    out_dir: Path | None = None,
    calibration: CalibrationRecord | None = None,
) -> Path:
    """Build the report of ``run`` and write it; returns the HTML path.

    ``out_dir`` also receives the PNG figures and ``summary.json`` (see
    :func:`save_report`). ``calibration`` as in :func:`build_report`.
    """
    report = build_report(run, calibration=calibration)
    return save_report(
        report, Path(out_html), out_dir=None if out_dir is None else Path(out_dir)
    ).html
