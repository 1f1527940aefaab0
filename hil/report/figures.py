"""The report's figures: matplotlib on the Agg canvas, PNG bytes, deterministic.

Figures use matplotlib's object-oriented API on the Agg canvas directly (no pyplot): no
display is needed, no global figure registry holds the figures, so nothing is left open.
Where a figure shows the twin, it also shows the twin's band (:func:`twin_band`): what the
comparator accepted around the twin, the declared tolerance widened to ``band_k`` times
the twin's prediction SD (:mod:`medtwin.hil.comparator.tolerance`).
PNGs carry no ``Software`` or time chunk, and matplotlib runs with its built-in default
style plus :data:`_STYLE` whatever the user's ``matplotlibrc`` says, so rendering a run
twice gives the same bytes. Long traces are reduced to a min/max envelope before plotting.
"""

from __future__ import annotations

import base64
import io
import struct
import tomllib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory
from medtwin.drivers.errors import MedtwinError
from medtwin.hil.comparator import ChannelSpec
from medtwin.hil.comparator.tolerance import ToleranceBand
from medtwin.hil.report.values import FloatArray, _channel, _finite, _has_data, _residual
from medtwin.hil.store import RunData
from medtwin.hil.twin import CHANNEL_KINDS, SD_SUFFIX

__all__ = ["BAND_LABEL", "ReportFigure", "band_caption", "twin_band"]

#: Legend of the twin's band in every figure that draws it.
BAND_LABEL = "twin's band: ±max(tolerance, k·prediction SD)"

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


def _png_size(png: bytes) -> tuple[int, int]:
    # IHDR is always the first chunk: width and height are big-endian uint32 at 16..24.
    width, height = struct.unpack(">II", png[16:24])
    return int(width), int(height)


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


_BAND_ALPHA = 0.18


def _channel_spec(run: RunData, name: str) -> ChannelSpec | None:
    """The comparator's settings of channel ``name`` in the run: the device kind's defaults
    (:data:`medtwin.hil.twin.CHANNEL_KINDS`) and the scenario's ``[tolerances.<name>]`` as
    stored with the run; None when they cannot be read back."""
    device, _, quantity = name.partition(".")
    kind = next((d.kind for d in run.devices if d.name == device), None)
    defaults = next(
        (c.defaults for c in CHANNEL_KINDS.get(str(kind), ()) if c.quantity == quantity), None
    )
    if defaults is None:
        return None
    try:
        table = tomllib.loads(run.scenario_text).get("tolerances", {}).get(name, {})
        return ChannelSpec.from_mapping(name, {**defaults, **table})
    except (tomllib.TOMLDecodeError, AttributeError, MedtwinError):
        return None


def twin_band(run: RunData, name: str) -> tuple[FloatArray, FloatArray, FloatArray] | None:
    """(t_s, twin, half-width) of the twin's band of channel ``name``: what the comparator
    accepted around the twin, ``max(abs_tol + rel_tol·|twin|, band_k·sd)`` with ``sd`` the
    twin's prediction SD stored with the run (``<name>.sd``: the model's noise and, for a
    calibrated twin, the calibration's uncertainty); the declared band where the run stored
    no SD. None without a twin series or a band."""
    twin = _channel(run, name, "twin")
    spec = _channel_spec(run, name)
    if twin is None or not _has_data(twin) or spec is None:
        return None
    half = np.zeros_like(twin.values)
    has_band = False
    if ToleranceBand.enabled(spec):
        half = spec.abs_tol + spec.rel_tol * np.abs(twin.values)
        has_band = True
    sd = _channel(run, name + SD_SUFFIX, "twin")
    if sd is not None and sd.values.shape == twin.values.shape:
        half = np.maximum(half, spec.band_k * sd.values)
        has_band = True
    if not has_band or not np.isfinite(half).any():
        return None
    return twin.t_s, twin.values, half


def band_caption(run: RunData, names: Sequence[str]) -> str:
    """The caption's sentence about the twin's band (empty when no channel has one)."""
    banded = [name for name in dict.fromkeys(names) if twin_band(run, name) is not None]
    if not banded:
        return ""
    with_sd = [n for n in banded if _channel(run, n + SD_SUFFIX, "twin") is not None]
    sd_text = (
        f"; for {', '.join(with_sd)} widened to k times the twin's prediction standard "
        "deviation (the model's noise and, for a calibrated twin, the calibration's "
        "uncertainty), so a reading outside it is outside what the twin predicts"
        if with_sd
        else ""
    )
    return (
        " Shaded: the twin's band, the range around the twin the comparator accepted: the "
        f"declared tolerance{sd_text}."
    )


def _fill_band(
    ax: Axes, t_s: FloatArray, low: FloatArray, high: FloatArray, axis: _TimeAxis, label: str
) -> None:
    # Reduced like the traces: the band's lowest and highest value per bucket.
    t_low, env_low = _envelope(t_s, low)
    _, env_high = _envelope(t_s, high)
    if t_low.size != t_s.size:
        env_low = np.repeat(env_low.reshape(-1, 2).min(axis=1), 2)
        env_high = np.repeat(env_high.reshape(-1, 2).max(axis=1), 2)
    ax.fill_between(
        axis(t_low), env_low, env_high, color=_TWIN_COLOUR, alpha=_BAND_ALPHA, lw=0, label=label
    )


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
    band = twin_band(run, name)
    if band is not None:
        t_s, twin, half = band
        _fill_band(ax, t_s, twin - half, twin + half, axis, BAND_LABEL)
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
    band = twin_band(run, name)
    if band is not None:
        # the band around the twin, seen from the residual: ±half-width about 0
        _fill_band(ax, band[0], -band[2], band[2], axis, BAND_LABEL)
    t_s, values = _envelope(*residual)
    ax.plot(axis(t_s), values, color="#2ca02c", lw=0.9, label=f"{name}: real − twin")
    ax.axhline(0.0, color="#555555", lw=0.7)
    ax.set_ylabel(f"residual ({unit})")
    _mark_drift(ax, events, axis)
    ax.legend(loc="upper right")
    return True
