"""The patient's signals: R-peak times, a plethysmogram and a respiration signal.

All three are driven by two phases computed once on a fine uniform grid
(:func:`cardiac_process`, 4 Hz by default) and interpolated to whatever rate a protocol
streams, so a whole day at 75 Hz is a handful of vectorised passes.

**R-R process (ECGSYN-style).** McSharry et al. 2003 (IEEE Trans Biomed Eng 50(3):289,
doi:10.1109/TBME.2003.808805) draw the R-R tachogram from a bimodal spectrum: a Mayer-wave
peak at ``f1 = 0.1 Hz`` and a respiratory-sinus-arrhythmia peak at ``f2 = 0.25 Hz``, both
Gaussian with ``σ = 0.01 Hz``, power ratio LF/HF = 0.5, scaled to a heart-rate standard
deviation ``hrstd`` (1 bpm). Here the LF part is drawn the same way (spectral synthesis:
amplitudes ``√S(f)``, uniform random phases, inverse FFT), while the HF part is tied to
the patient's own breathing, ``−√2·sin φ_resp(t)``, so that its peak sits at the
respiratory rate of the moment and vanishes in apnoea. With relative fluctuation
``ε(t) = (hrstd/HR(t))·(√(LF/(LF+HF))·lf(t) + √(HF/(LF+HF))·√2·sin φ_resp(t))`` the
instantaneous beat rate is ``f(t) = HR(t)/60·(1 − ε(t))`` (so the R-R interval
``rr(t) = 1/f(t) ≈ 60/HR·(1 + ε)`` is shortest mid-inspiration). Beats are placed by the
integral pulse frequency model (Mateo & Laguna 2000, IEEE Trans Biomed Eng 47(8):985,
doi:10.1109/10.855925): the beat phase ``Φ(t) = Φ0 + ∫ f(u) du`` (cycles) and an R peak
wherever ``Φ`` crosses an integer. As ``ε`` has zero mean, the number of beats in a window
is ``∫ HR/60``: the mean R-R interval over the beats is ``60/HR``, following the
(time-varying) mean heart rate.

**Plethysmogram.** One pulse per beat, arriving a pulse transit time ``ptt_s`` after the
R peak: the pulse shape is the sum of a systolic and a diastolic (reflected-wave)
Gaussian over the beat phase, normalised to [0, 1], with the "excellent" template of Tang
et al. 2020 (Sci Rep 10:13883, doi:10.1038/s41598-020-69076-x, Table 1: centres −1.5161
and 0.8186 rad, widths 0.6303 and 1.0225 rad, heights 1 and 0.1999) converted from rad on
[−π, π) to fractions of the beat.
Its amplitude is proportional to the perfusion index (full scale at
``pi_full_scale_percent``), modulated by breathing (amplitude and baseline, the
respiratory-induced intensity and amplitude variations); a motion artefact adds
band-limited noise, and with the sensor off the signal is flat. The float signal lives in
[0, 1]; :func:`quantise` maps it to the 8-bit (0..255) and 16-bit (0..65535) pleth
samples of Nonin serial data formats #2 and #7. Scaling, delay and modulation depths are
model choices of this project, not a Nonin specification.

**Respiration.** ``0.5·(1 − cos 2πu)`` of the breath phase, with the phase warped so that
inspiration takes ``inspiratory_fraction`` of each breath: its fundamental is RR/60 Hz
and it stands still in apnoea.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from medtwin.device_models.base import ParameterError, param
from medtwin.device_models.patient.vitals import time_grid
from numpy.typing import ArrayLike, NDArray
from scipy.fft import irfft, next_fast_len

__all__ = [
    "CardiacProcess",
    "HrvParams",
    "PlethParams",
    "RespParams",
    "SignalParams",
    "cardiac_process",
    "lf_component",
    "pleth",
    "pulse_shape",
    "quantise",
    "respiration",
    "sample_times",
]

FloatArray = NDArray[np.float64]
_PAD_S = 2.0  # the process grid extends this far beyond the record (the pleth's delay)
_BLOCK = 1 << 16  # samples per block of the plethysmogram's inner loop


@dataclass(frozen=True)
class HrvParams:
    """The R-R process (defaults: McSharry et al. 2003)."""

    hr_sd_bpm: float = param(1.0, unit="1/min", doc="HR standard deviation (hrstd)", minimum=0.0)
    lf_hz: float = param(0.1, unit="Hz", doc="Mayer-wave peak frequency", minimum=0.01)
    lf_sd_hz: float = param(0.01, unit="Hz", doc="Mayer-wave peak width (σ)", minimum=1e-4)
    lf_hf_ratio: float = param(0.5, unit="", doc="LF/HF power ratio", minimum=0.0)
    grid_hz: float = param(
        4.0, unit="Hz", doc="rate of the grid the phases are computed on", minimum=1.0
    )


@dataclass(frozen=True)
class PlethParams:
    """Plethysmogram shape (Tang et al. 2020) and scaling (model choices, see the module)."""

    ptt_s: float = param(
        0.25, unit="s", doc="pulse transit time, R peak to pulse foot", minimum=0.0, maximum=1.5
    )
    systolic_phase: float = param(
        0.2587, unit="cycle", doc="systolic peak position", minimum=0.0, maximum=1.0
    )
    systolic_width: float = param(0.1003, unit="cycle", doc="systolic peak σ", minimum=0.005)
    diastolic_phase: float = param(
        0.6303, unit="cycle", doc="diastolic peak position", minimum=0.0, maximum=1.0
    )
    diastolic_width: float = param(0.1627, unit="cycle", doc="diastolic peak σ", minimum=0.005)
    diastolic_ratio: float = param(
        0.1999, unit="", doc="diastolic/systolic peak height", minimum=0.0, maximum=2.0
    )
    dc_level: float = param(0.5, unit="full scale", doc="signal midline", minimum=0.0, maximum=1.0)
    max_amplitude: float = param(
        0.8, unit="full scale", doc="peak-to-peak at full-scale PI", minimum=0.0, maximum=1.0
    )
    pi_full_scale_percent: float = param(5.0, unit="%", doc="PI giving max_amplitude", minimum=0.01)
    resp_amplitude_mod: float = param(
        0.1, unit="", doc="respiratory amplitude modulation depth", minimum=0.0, maximum=1.0
    )
    resp_baseline_mod: float = param(
        0.03, unit="full scale", doc="respiratory baseline modulation", minimum=0.0
    )
    noise_sd: float = param(0.002, unit="full scale", doc="sensor noise (1 σ)", minimum=0.0)
    motion_sd: float = param(
        0.2, unit="full scale", doc="motion artefact (1 σ) at amplitude 1", minimum=0.0
    )
    sensor_off_level: float = param(
        0.0, unit="full scale", doc="value with the sensor off", minimum=0.0, maximum=1.0
    )


@dataclass(frozen=True)
class RespParams:
    """Respiration signal (e.g. thoracic impedance), in arbitrary units."""

    amplitude: float = param(1.0, unit="a.u.", doc="peak-to-peak", minimum=0.0)
    inspiratory_fraction: float = param(
        0.4, unit="", doc="share of a breath spent inspiring", minimum=0.05, maximum=0.95
    )
    noise_sd: float = param(0.01, unit="a.u.", doc="noise (1 σ)", minimum=0.0)


@dataclass(frozen=True)
class SignalParams:
    """Every signal's parameters."""

    hrv: HrvParams = field(default_factory=HrvParams)
    pleth: PlethParams = field(default_factory=PlethParams)
    resp: RespParams = field(default_factory=RespParams)


@dataclass(frozen=True)
class CardiacProcess:
    """Beat and breath phases on a uniform grid.

    Attributes
    ----------
    t_s : ndarray, shape (m,)
        The grid: ``start_s − 2 s`` to ``end_s + 2 s`` at ``grid_hz``.
    beat_phase : ndarray, shape (m,)
        ``Φ(t)`` in cycles, increasing; an R peak where it crosses an integer.
    resp_phase_rad : ndarray, shape (m,)
        The breathing phase (rad), non-decreasing.
    rr_interval_s : ndarray, shape (m,)
        The instantaneous R-R interval ``rr(t) = 1/f(t)`` (s).
    start_s, end_s : float
        The record the process covers.
    """

    t_s: FloatArray
    beat_phase: FloatArray
    resp_phase_rad: FloatArray
    rr_interval_s: FloatArray
    start_s: float
    end_s: float

    def r_peak_times_s(self) -> FloatArray:
        """R-peak times (s) in ``[start_s, end_s]``, increasing."""
        lo = np.interp(self.start_s, self.t_s, self.beat_phase)
        hi = np.interp(self.end_s, self.t_s, self.beat_phase)
        k = np.arange(np.ceil(lo), np.floor(hi) + 1.0)
        return np.asarray(np.interp(k, self.beat_phase, self.t_s))


def lf_component(n: int, fs_hz: float, params: HrvParams, rng: np.random.Generator) -> FloatArray:
    """Unit-variance Mayer-wave noise: Gaussian spectrum at ``lf_hz``, random phases.

    Parameters
    ----------
    n : int
        Number of samples at ``fs_hz``.
    rng : numpy.random.Generator
        Consumes ``n // 2 + 1`` uniforms.

    Returns
    -------
    ndarray, shape (n,)
        Zero mean and unit sample variance (zero if no frequency bin carries power).
    """
    # Drawn at an FFT-friendly length ≥ n and cut to n (a day at 4 Hz: 345 616 has a
    # large prime factor; 349 920 = 2^5·3^7·5 is 5× faster).
    n_fft = next_fast_len(max(n, 2), real=True)
    f = np.fft.rfftfreq(n_fft, d=1.0 / fs_hz)
    amplitude = np.exp(-0.25 * ((f - params.lf_hz) / params.lf_sd_hz) ** 2)  # √S(f)
    amplitude[0] = 0.0
    spectrum = amplitude * np.exp(2j * np.pi * rng.random(f.size))
    x = irfft(spectrum, n=n_fft)[:n]
    x -= x.mean()
    sd = float(x.std())
    return np.asarray(x / sd if sd > 0.0 else x)


def cardiac_process(
    t_s: ArrayLike,
    hr_bpm: ArrayLike,
    rr_min: ArrayLike,
    params: HrvParams,
    rng: np.random.Generator,
) -> CardiacProcess:
    """The R-R process and the breathing phase for a record of vital signs.

    Parameters
    ----------
    t_s : array_like, shape (n,)
        The vital signs' time grid (s), increasing.
    hr_bpm, rr_min : array_like, shape (n,)
        Mean heart rate (1/min) and respiratory rate (1/min) on it; linear in between,
        held constant outside.
    params : HrvParams
    rng : numpy.random.Generator
        Seeded; consumes one uniform (the initial beat phase) and the LF draws.

    Returns
    -------
    CardiacProcess
    """
    t = time_grid(t_s)
    hr = np.asarray(hr_bpm, dtype=np.float64)
    rr = np.asarray(rr_min, dtype=np.float64)
    if hr.shape != t.shape or rr.shape != t.shape:
        raise ParameterError(f"hr_bpm and rr_min must have the shape of t_s, {t.shape}")
    if not np.all(hr > 0.0):
        raise ParameterError("hr_bpm must be > 0 everywhere (asystole is not modelled)")
    start, end = float(t[0]), float(t[-1])
    dt = 1.0 / params.grid_hz
    m = int(np.ceil((end - start + 2.0 * _PAD_S) / dt)) + 1
    grid = np.asarray(start - _PAD_S + dt * np.arange(m), dtype=np.float64)
    hr_g = np.interp(grid, t, hr)
    f_resp = np.maximum(np.interp(grid, t, rr), 0.0) / 60.0
    resp_phase = np.concatenate(([0.0], np.cumsum(np.pi * (f_resp[1:] + f_resp[:-1]) * dt)))
    resp_phase -= np.interp(start, grid, resp_phase)  # 0 at the record's start
    phi0 = rng.random()
    ratio = params.lf_hf_ratio
    lf = lf_component(m, params.grid_hz, params, rng)
    eps = (params.hr_sd_bpm / hr_g) * (
        np.sqrt(ratio / (1.0 + ratio)) * lf
        + np.sqrt(1.0 / (1.0 + ratio)) * np.sqrt(2.0) * np.sin(resp_phase)
    )
    # The beat rate, not the interval, carries the zero-mean fluctuation: the number of
    # beats in a window is ∫ rate, so the mean R-R over the beats is exactly 60/HR.
    rate = hr_g / 60.0 * (1.0 - np.clip(eps, -0.5, 0.5))
    rr_s = 1.0 / rate
    beat = np.concatenate(([0.0], np.cumsum(0.5 * (rate[1:] + rate[:-1]) * dt)))
    beat += -phi0 - np.interp(start, grid, beat)
    return CardiacProcess(
        t_s=grid,
        beat_phase=beat,
        resp_phase_rad=resp_phase,
        rr_interval_s=rr_s,
        start_s=start,
        end_s=end,
    )


def sample_times(start_s: float, end_s: float, fs_hz: float) -> FloatArray:
    """``start_s + k/fs_hz`` for every ``k`` with the time ≤ ``end_s``."""
    if not fs_hz > 0.0:
        raise ParameterError(f"fs_hz = {fs_hz!r} must be > 0")
    n = int(np.floor((end_s - start_s) * fs_hz + 1e-9)) + 1
    t = np.arange(n, dtype=np.float64)
    t /= fs_hz
    t += start_s
    return t


def pulse_shape(params: PlethParams, n: int = 1024) -> FloatArray:
    """One pulse over the beat phase [0, 1): ``n + 1`` samples (the last repeats the
    first), normalised to min 0, max 1."""
    p = np.arange(n + 1) / n
    y = np.zeros(n + 1)
    for centre, width, height in (
        (params.systolic_phase, params.systolic_width, 1.0),
        (params.diastolic_phase, params.diastolic_width, params.diastolic_ratio),
    ):
        for wrap in (-1.0, 0.0, 1.0):
            y += height * np.exp(-0.5 * ((p - centre - wrap) / width) ** 2)
    y -= y.min()
    return np.asarray(y / y.max())


def _runs(flag: NDArray[np.bool_], t: FloatArray) -> list[tuple[float, float]]:
    """[start, stop) time intervals where ``flag`` holds (sample-and-hold on ``t``)."""
    edges = np.diff(np.concatenate(([0], flag.astype(np.int8), [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    t_next = np.concatenate((t[1:], [np.inf]))
    return [(float(t[a]), float(t_next[b - 1])) for a, b in zip(starts, stops, strict=True)]


def _index_range(t0: float, fs_hz: float, n: int, start: float, stop: float) -> slice:
    i = int(np.clip(np.ceil((start - t0) * fs_hz - 1e-9), 0, n))
    j = int(np.clip(np.ceil((stop - t0) * fs_hz - 1e-9), 0, n)) if np.isfinite(stop) else n
    return slice(i, j)


def pleth(
    process: CardiacProcess,
    t_s: ArrayLike,
    pi_percent: ArrayLike,
    *,
    fs_hz: float = 75.0,
    params: PlethParams,
    rng: np.random.Generator,
    sensor_off: ArrayLike | None = None,
    motion_amplitude: ArrayLike | None = None,
) -> tuple[FloatArray, FloatArray]:
    """The plethysmogram at ``fs_hz`` over the process's record.

    Parameters
    ----------
    process : CardiacProcess
        From :func:`cardiac_process` on the same record.
    t_s, pi_percent : array_like, shape (n,)
        The vital signs' grid and perfusion index (%).
    fs_hz : float
        Sampling rate (Nonin formats #2/#7: 75 Hz).
    params : PlethParams
    rng : numpy.random.Generator
        Seeded; sensor noise (float32 normals) and motion noise.
    sensor_off : array_like of bool, shape (n,), optional
    motion_amplitude : array_like, shape (n,), optional
        Flags and motion amplitude on ``t_s`` (sample-and-hold between grid points).

    Returns
    -------
    t : ndarray, shape (k,)
        Sample times ``t_s[0] + i/fs_hz``.
    x : ndarray, shape (k,)
        The signal in [0, 1] (full scale); see :func:`quantise`.
    """
    t = time_grid(t_s)
    pi = np.asarray(pi_percent, dtype=np.float64)
    if pi.shape != t.shape:
        raise ParameterError(f"pi_percent has shape {pi.shape}, expected {t.shape}")
    tp = sample_times(process.start_s, process.end_s, fs_hz)
    grid = process.t_s
    amp_g = np.clip(np.interp(grid, t, pi) / params.pi_full_scale_percent, 0.0, 1.0)
    sin_r = np.sin(process.resp_phase_rad)
    amp_g *= params.max_amplitude * (1.0 + params.resp_amplitude_mod * sin_r)
    base_g = params.dc_level + params.resp_baseline_mod * sin_r
    table = pulse_shape(params) - 0.5  # centred on the midline
    n_table = table.size - 1
    slope = np.diff(table)
    # Everything the finger sees is delayed by the transit time: Φ, amplitude and baseline.
    delayed = grid + params.ptt_s
    x = np.empty(tp.size)
    # A day at 75 Hz is 6.5 M samples: computed in blocks that stay in cache (whole-array
    # temporaries would cost a page fault per 4 kB on every pass).
    for a in range(0, tp.size, _BLOCK):
        tb = tp[a : a + _BLOCK]
        lo = max(int(np.searchsorted(delayed, tb[0])) - 1, 0)
        hi = int(np.searchsorted(delayed, tb[-1])) + 1
        g = delayed[lo : hi + 1]
        xb = np.interp(tb, g, process.beat_phase[lo : hi + 1])
        xb -= np.floor(xb)
        xb *= n_table
        i0 = xb.astype(np.intp)
        xb -= i0
        xb *= slope[i0]
        xb += table[i0]  # the pulse shape at the beat phase, linear between table points
        xb *= np.interp(tb, g, amp_g[lo : hi + 1])
        xb += np.interp(tb, g, base_g[lo : hi + 1])
        if params.noise_sd > 0.0:
            noise = rng.standard_normal(tb.size, dtype=np.float32)
            noise *= params.noise_sd
            xb += noise
        x[a : a + _BLOCK] = xb
    if motion_amplitude is not None:
        amp = np.asarray(motion_amplitude, dtype=np.float64)
        if amp.shape != t.shape:
            raise ParameterError(f"motion_amplitude has shape {amp.shape}, expected {t.shape}")
        runs = _runs(amp > 0.0, t)
        if runs and params.motion_sd > 0.0:
            # White noise on the 4 Hz grid, linearly interpolated: band-limited to ~2 Hz,
            # overlapping the cardiac band as real motion artefacts do.
            hold = np.clip(np.searchsorted(t, grid, side="right") - 1, 0, t.size - 1)
            noise_g = params.motion_sd * amp[hold] * rng.standard_normal(grid.size)
            for start, stop in runs:
                s = _index_range(float(tp[0]), fs_hz, tp.size, start, stop)
                x[s] += np.interp(tp[s], grid, noise_g)
    np.clip(x, 0.0, 1.0, out=x)
    if sensor_off is not None:
        off = np.asarray(sensor_off, dtype=bool)
        if off.shape != t.shape:
            raise ParameterError(f"sensor_off has shape {off.shape}, expected {t.shape}")
        for start, stop in _runs(off, t):
            x[_index_range(float(tp[0]), fs_hz, tp.size, start, stop)] = params.sensor_off_level
    return tp, x


def quantise(x: ArrayLike, bits: int) -> NDArray[np.uint8] | NDArray[np.uint16]:
    """Full-scale [0, 1] samples to unsigned integers: 8 bits → 0..255 (Nonin #2's PLETH
    byte), 16 bits → 0..65535 (Nonin #7's PLETH MSB/LSB)."""
    if bits not in (8, 16):
        raise ParameterError(f"bits = {bits!r}: expected 8 or 16")
    full = float((1 << bits) - 1)
    scaled = np.multiply(x, full, dtype=np.float64)
    np.clip(scaled, 0.0, full, out=scaled)
    np.rint(scaled, out=scaled)
    if bits == 8:
        return scaled.astype(np.uint8)
    return scaled.astype(np.uint16)


def respiration(
    process: CardiacProcess,
    *,
    fs_hz: float = 25.0,
    params: RespParams,
    rng: np.random.Generator,
) -> tuple[FloatArray, FloatArray]:
    """The respiration signal at ``fs_hz`` over the process's record.

    Returns
    -------
    t : ndarray, shape (k,)
    y : ndarray, shape (k,)
        ``amplitude·0.5·(1 − cos 2πu) + noise``, ``u`` the warped breath phase.
    """
    tp = sample_times(process.start_s, process.end_s, fs_hz)
    cycles = np.interp(tp, process.t_s, process.resp_phase_rad) / (2.0 * np.pi)
    p = cycles - np.floor(cycles)
    ti = params.inspiratory_fraction
    u = np.where(p < ti, 0.5 * p / ti, 0.5 + 0.5 * (p - ti) / (1.0 - ti))
    y = params.amplitude * 0.5 * (1.0 - np.cos(2.0 * np.pi * u))
    if params.noise_sd > 0.0:
        y += params.noise_sd * rng.standard_normal(tp.size)
    return tp, y
