"""The shared patient of an emulated bench: what a simulator sets and every oximeter sees.

One :class:`PatientWorld` holds the patient simulator's settings (a ProSim 8: heart rate,
SpO2, respiration rate, NIBP, IBP) and the conditions at the finger (perfusion index,
sensor off, motion), generates the patient from them *live*, in chunks of device time
just ahead of now, and serves each oximeter of the bench through its own monitor model
(:class:`~medtwin.device_models.monitor.monitor.MonitorStream` with that monitor's
:class:`~medtwin.device_models.monitor.params.MonitorParams`), so a "real" oximeter can
average, lag and be biased differently from its twin while both watch the same patient.

**Generation.** The world grid is ``k/grid_hz`` (4 Hz) plus every instant a setting
changed. Each *segment* of device time (a chunk ``[k·chunk_s, (k+1)·chunk_s)``, or the
rest of it after a change) is generated with its own generator seeded by
``(seed, segment start in µs)``, so the patient depends only on the seed and on *when*
settings changed, never on how often a client polls (chunk boundaries are invisible):

* vital signs: the set value plus a small Ornstein–Uhlenbeck deviation
  (:func:`~medtwin.device_models.patient.vitals.ou_deviations`, continued across segments
  from the last sample) — HR in bpm, SpO2 in % (clipped to 0–100), the perfusion index
  multiplicatively;
* the beat and breath phases from
  :func:`~medtwin.device_models.patient.signals.cardiac_process` (R-R variability of
  McSharry et al. 2003), shifted so that both phases are continuous where one segment
  meets the next: an R peak lies wherever the beat phase crosses an integer, so the
  monitors' HR averaging sees real R-R intervals whose mean is ``60/HR``;
* the plethysmogram at any requested instant, with the shape, transit-time delay and
  respiratory modulation of :func:`~medtwin.device_models.patient.signals.pleth`, sensor
  noise drawn on a fixed ``pleth_noise_hz`` grid, band-limited motion noise on the world
  grid, and the flat sensor-off level.

A setting changed at device time ``t`` cuts the generated future at ``t`` and regenerates
from ``t``: the change acts at ``t`` (the first sample with the new value is at ``t``)
with the cardiac and respiratory phases continuous. Monitors are fed every sample and R
peak *before* now (never one a later change could still alter), so a monitor's display
lags the patient by at most one grid step (0.25 s) besides its own averaging and delays.
Only ``history_s`` of signal behind now is kept (the pleth can be asked that far back).

Simplification (documented, model choice): the respiratory-sinus-arrhythmia term of the
R-R process restarts its breathing phase in each segment (the phase the pleth and the
respiration use is continuous); with the small ``hrv.hr_sd_bpm`` of a simulator this
moves single R-R intervals by a few milliseconds at segment boundaries.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from medtwin.device_models.monitor.monitor import MonitorOutput, MonitorStream
from medtwin.device_models.monitor.params import MonitorParams
from medtwin.device_models.patient.demographics import Demographics
from medtwin.device_models.patient.signals import (
    HrvParams,
    PlethParams,
    cardiac_process,
    pulse_shape,
)
from medtwin.device_models.patient.vitals import ou_deviations
from medtwin.drivers.emulators.mechanisms import (
    OximeterMechanism,
    OximeterSnapshot,
    PatientSimulatorMechanism,
    SimulatorSettings,
)
from medtwin.drivers.vital_signs import SimulatorLimits
from numpy.typing import NDArray

__all__ = ["DEFAULT_SETTINGS", "PatientWorld", "WorldParams"]

FloatArray = NDArray[np.float64]

#: A ProSim 8 after power-on as this project assumes it (HR 80 bpm, SpO2 97 %, RR 15/min,
#: NIBP 120/80 mmHg; IBP channel 1 arterial 120/80, channel 2 static 0 — the IBP defaults
#: are unverified).
DEFAULT_SETTINGS = SimulatorSettings(
    remote=False,
    heart_rate_bpm=80.0,
    spo2_percent=97.0,
    resp_rate_min=15.0,
    nibp_sys_mmhg=120.0,
    nibp_dia_mmhg=80.0,
    ibp={1: (120.0, 80.0), 2: (0.0, 0.0)},
    ibp_wave={1: "ART", 2: "ART"},
)

_IBP_WAVES = ("ART", "RART", "LV", "LA", "RV", "PA", "PAW", "RA")
_EPS_T = 1e-6  # s: two instants closer than this are the same grid point


@dataclass(frozen=True)
class WorldParams:
    """How the world generates the patient (model choices of this project).

    Attributes
    ----------
    grid_hz : float
        Rate of the world grid the monitors are fed (Hz); also the R-R process's grid.
    chunk_s : float
        Length of a generated chunk of device time (s).
    history_s : float
        Signal kept behind now (s); the pleth can be asked this far back.
    pi_percent : float
        Perfusion index at the finger (%), until :meth:`PatientWorld.set_perfusion`.
    hr_sd_bpm, hr_tau_s : float
        Slow HR deviation from the set rate: stationary SD (bpm), correlation time (s).
    spo2_sd_percent, spo2_tau_s : float
        Slow SpO2 deviation (%), correlation time (s).
    pi_sd_log, pi_tau_s : float
        Multiplicative PI deviation (SD of the log), correlation time (s).
    hrv : HrvParams
        Beat-to-beat variability (a simulator's rhythm is steadier than a patient's: 0.5
        bpm instead of McSharry's 1 bpm).
    pleth : PlethParams
        Pleth shape and scaling.
    pleth_noise_hz : float
        Grid the pleth's sensor noise is drawn on (Hz; Nonin streams 75 Hz).
    """

    grid_hz: float = 4.0
    chunk_s: float = 10.0
    history_s: float = 60.0
    pi_percent: float = 2.0
    hr_sd_bpm: float = 0.3
    hr_tau_s: float = 60.0
    spo2_sd_percent: float = 0.2
    spo2_tau_s: float = 30.0
    pi_sd_log: float = 0.05
    pi_tau_s: float = 60.0
    hrv: HrvParams = field(default_factory=lambda: HrvParams(hr_sd_bpm=0.5))
    pleth: PlethParams = field(default_factory=PlethParams)
    pleth_noise_hz: float = 75.0

    def __post_init__(self) -> None:
        for name in ("grid_hz", "chunk_s", "history_s", "pi_percent", "pleth_noise_hz"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"WorldParams.{name} = {value!r} must be > 0")
        for name in ("hr_sd_bpm", "spo2_sd_percent", "pi_sd_log"):
            if not getattr(self, name) >= 0.0:
                raise ValueError(f"WorldParams.{name} must be >= 0")
        if self.chunk_s * self.grid_hz < 1.0:
            raise ValueError("WorldParams.chunk_s must hold at least one grid step")


@dataclass(frozen=True)
class _Conditions:
    """What the simulator and the finger impose from a given instant on."""

    hr_bpm: float
    spo2_percent: float
    rr_min: float
    pi_percent: float
    sensor_off: bool
    motion: float  # motion artefact amplitude, 0 = none


class _Series:
    """Time-stamped arrays appended at the end, cut at an instant, trimmed at the front."""

    def __init__(self, names: Sequence[str]) -> None:
        self.t = np.empty(0)
        self.cols: dict[str, FloatArray] = {name: np.empty(0) for name in names}

    def cut(self, t_s: float) -> None:
        """Drop every point at or after ``t_s``."""
        k = int(np.searchsorted(self.t, t_s - _EPS_T, side="left"))
        self.t = self.t[:k]
        for name, col in self.cols.items():
            self.cols[name] = col[:k]

    def append(self, t: FloatArray, **cols: FloatArray) -> None:
        self.t = np.concatenate([self.t, t])
        for name in self.cols:
            self.cols[name] = np.concatenate([self.cols[name], cols[name]])

    def trim(self, t_s: float) -> None:
        """Forget points before ``t_s`` (keeping the one at or before it), amortised."""
        k = int(np.searchsorted(self.t, t_s, side="right")) - 1
        if k > 0 and k > self.t.size // 2:
            self.t = self.t[k:]
            for name, col in self.cols.items():
                self.cols[name] = col[k:]

    def held(self, name: str, t: FloatArray) -> FloatArray:
        """Sample-and-hold value of column ``name`` at times ``t``."""
        i = np.clip(np.searchsorted(self.t, t + _EPS_T, side="right") - 1, 0, self.t.size - 1)
        return np.asarray(self.cols[name][i], dtype=np.float64)


class PatientWorld:
    """One patient generated live for every simulator and oximeter of a bench.

    Parameters
    ----------
    now : callable
        Device time (s), non-decreasing; everything is evaluated at ``now()``.
    seed : int
        Seeds every random draw (see the module: the patient does not depend on polling).
    demographics : Demographics, optional
        Kept for the scenario's record; the simulator's settings, not the demographics,
        set the vital signs (a ProSim 8 generates whatever it is set to).
    settings : SimulatorSettings, optional
        Initial settings (default :data:`DEFAULT_SETTINGS`); ``ValueError`` if invalid.
    params : WorldParams, optional
    limits : SimulatorLimits, optional
        What the simulator can generate (ProSim 8 ranges by default).

    Attributes
    ----------
    simulator : PatientSimulatorMechanism
        The simulator the ProSim 8 emulator drives.
    """

    def __init__(
        self,
        now: Callable[[], float],
        *,
        seed: int = 0,
        demographics: Demographics | None = None,
        settings: SimulatorSettings | None = None,
        params: WorldParams | None = None,
        limits: SimulatorLimits | None = None,
    ) -> None:
        self._now = now
        self.seed = int(seed)
        self.demographics = demographics
        self.params = params or WorldParams()
        self.limits = limits or SimulatorLimits()
        start = settings or DEFAULT_SETTINGS
        _check_settings(start, self.limits)
        self._settings = replace(start, ibp=dict(start.ibp), ibp_wave=dict(start.ibp_wave))
        self._cond = _Conditions(
            hr_bpm=start.heart_rate_bpm,
            spo2_percent=start.spo2_percent,
            rr_min=start.resp_rate_min,
            pi_percent=self.params.pi_percent,
            sensor_off=False,
            motion=0.0,
        )
        self._t_start = float(now())
        self._t_now = self._t_start
        self._gen_end = self._t_start
        self._vitals = _Series(
            ("hr", "spo2", "pi", "off", "motion", "motion_noise", "dhr", "dspo2", "dpi")
        )
        self._cardiac = _Series(("beat", "resp"))
        self._noise_k0 = 0  # index of the first stored pleth-noise node (k/pleth_noise_hz)
        self._noise = np.empty(0)
        self._table = pulse_shape(self.params.pleth) - 0.5
        self._oximeters: list[_Oximeter] = []
        self.simulator: PatientSimulatorMechanism = _Simulator(self)
        self._generate_through(self._t_start)

    # -- public ---------------------------------------------------------------------------

    def now(self) -> float:
        """Device time (s), never before the world's last evaluation."""
        self._t_now = max(float(self._now()), self._t_now)
        return self._t_now

    def oximeter(
        self,
        params: MonitorParams,
        *,
        model: str,
        serial: str,
        firmware: str = "",
        extended: MonitorParams | None = None,
    ) -> OximeterMechanism:
        """A pulse oximeter watching this patient through its own monitor model.

        It is switched on now: its monitor sees the patient from now on.

        Parameters
        ----------
        params : MonitorParams
            Its averaging, delays, bias and alarms (e.g. ``monitor_preset("nonin")``).
        model, serial, firmware : str
            Its identity, as its protocol reports it.
        extended : MonitorParams, optional
            A second, slower averaging whose values go to ``snapshot().extended``
            (``spo2_extended_percent``, ``hr_extended_bpm``: Nonin's 8-beat values).
        """
        t = self.now()
        self._sync(t)
        ox = _Oximeter(self, params, model=model, serial=serial, firmware=firmware, t_on=t)
        if extended is not None:
            ox.extended_stream = _Feed(self, extended, t)
        self._oximeters.append(ox)
        return ox

    def set_perfusion(self, pi_percent: float) -> None:
        """Perfusion index at the finger (%) from now on (low perfusion below the
        monitors' thresholds). ``ValueError`` unless 0 < PI <= 20."""
        if not (math.isfinite(pi_percent) and 0.0 < pi_percent <= 20.0):
            raise ValueError(f"perfusion index {pi_percent!r} % must be in (0, 20]")
        self._change(replace(self._cond, pi_percent=float(pi_percent)))

    def set_sensor_off(self, off: bool) -> None:
        """Take the oximeter probes off the finger (True) or put them back."""
        self._change(replace(self._cond, sensor_off=bool(off)))

    def set_motion(self, amplitude: float) -> None:
        """Motion artefact amplitude from now on (0 none, 1 the pleth's ``motion_sd``)."""
        if not (math.isfinite(amplitude) and 0.0 <= amplitude <= 10.0):
            raise ValueError(f"motion amplitude {amplitude!r} must be in [0, 10]")
        self._change(replace(self._cond, motion=float(amplitude)))

    def true_values(self) -> dict[str, float | bool]:
        """The patient as generated at now (mean-plus-deviation values, before any
        monitor): ``hr_bpm``, ``spo2_percent``, ``pi_percent``, ``rr_min``,
        ``sensor_off``, ``motion``."""
        t = self.now()
        self._sync(t)
        at = np.array([t])
        v = self._vitals
        return {
            "hr_bpm": float(v.held("hr", at)[0]),
            "spo2_percent": float(v.held("spo2", at)[0]),
            "pi_percent": float(v.held("pi", at)[0]),
            "rr_min": self._cond.rr_min,
            "sensor_off": bool(v.held("off", at)[0]),
            "motion": float(v.held("motion", at)[0]),
        }

    def r_peak_times(self, start_s: float, end_s: float) -> FloatArray:
        """R-peak times (s) in ``[start_s, end_s)``; ``end_s`` at most now, ``start_s``
        within the kept history."""
        t = self.now()
        if end_s > t + _EPS_T:
            raise ValueError(f"end_s = {end_s:g} s is in the future (now {t:g} s)")
        self._sync(t)
        self._check_history(start_s)
        c = self._cardiac
        lo, hi = np.interp([start_s, end_s], c.t, c.cols["beat"])
        k = np.arange(math.ceil(lo), math.ceil(hi), dtype=np.float64)
        return np.asarray(np.interp(k, c.cols["beat"], c.t))

    def pleth(self, t_s: Sequence[float] | FloatArray) -> FloatArray:
        """Plethysmogram in [0, 1] at the given device times (ascending, none in the
        future, none older than ``history_s``)."""
        t = np.asarray(t_s, dtype=np.float64)
        if t.ndim != 1:
            raise ValueError("t_s must be one-dimensional")
        if t.size == 0:
            return np.empty(0)
        if np.any(np.diff(t) < 0.0):
            raise ValueError("pleth times must be ascending")
        now = self.now()
        if t[-1] > now + _EPS_T:
            raise ValueError(f"pleth asked at {t[-1]:g} s, in the future (now {now:g} s)")
        self._sync(now)
        self._check_history(float(t[0]))
        return self._pleth(t)

    # -- generation -----------------------------------------------------------------------

    def _check_history(self, t_s: float) -> None:
        first = max(
            self._t_start,
            float(self._vitals.t[0]),
            float(self._cardiac.t[0]) + self.params.pleth.ptt_s,
        )
        if t_s < first - _EPS_T:
            raise ValueError(
                f"t = {t_s:g} s is before the kept history (from {first:g} s; "
                f"history_s = {self.params.history_s:g})"
            )

    def _sync(self, t: float) -> None:
        """Generate through ``t`` and feed every monitor everything before ``t``."""
        self._generate_through(t)
        for ox in self._oximeters:
            ox.feed(t)
        keep = t - self.params.history_s
        if keep > self._t_start:
            self._vitals.trim(keep)
            self._cardiac.trim(keep - self.params.pleth.ptt_s - 1.0)
            k = math.floor(keep * self.params.pleth_noise_hz) - self._noise_k0
            if k > 0 and k > self._noise.size // 2:
                self._noise = self._noise[k:]
                self._noise_k0 += k

    def _generate_through(self, t: float) -> None:
        while self._gen_end <= t:
            a = self._gen_end
            b = (math.floor(a / self.params.chunk_s + 1e-9) + 1) * self.params.chunk_s
            self._segment(a, b)

    def _change(self, cond: _Conditions) -> None:
        """New conditions from now: cut the generated future at now and regenerate."""
        t = self.now()
        self._sync(t)
        if cond == self._cond:
            return
        self._cond = cond
        self._vitals.cut(t)
        self._segment(t, self._gen_end)

    def _noise_index(self, t: float) -> int:
        """Index of the first pleth-noise node at or after ``t``."""
        return math.ceil(t * self.params.pleth_noise_hz - 1e-9)

    def _segment(self, a: float, b: float) -> None:
        """Generate ``[a, b)`` from the state just before ``a`` with the current conditions."""
        p = self.params
        cond = self._cond
        rng = np.random.default_rng([self.seed % (1 << 63), round(a * 1e6) % (1 << 63)])
        k0 = math.floor(a * p.grid_hz + 1e-9) + 1
        k1 = math.ceil(b * p.grid_hz - 1e-9)
        grid = np.concatenate([[a], np.arange(k0, k1, dtype=np.float64) / p.grid_hz])
        grid = grid[np.concatenate([[True], grid[1:] > a + _EPS_T])]
        v = self._vitals
        prev_t = float(v.t[-1]) if v.t.size else None

        def walk(name: str, sd: float, tau: float) -> FloatArray:
            if prev_t is None:
                return ou_deviations(grid, sd, tau, rng)
            d0 = float(v.cols[name][-1])
            return ou_deviations(np.concatenate([[prev_t], grid]), sd, tau, rng, d0=d0)[1:]

        dhr = walk("dhr", p.hr_sd_bpm, p.hr_tau_s)
        dspo2 = walk("dspo2", p.spo2_sd_percent, p.spo2_tau_s)
        dpi = walk("dpi", p.pi_sd_log, p.pi_tau_s)
        hr = np.maximum(cond.hr_bpm + dhr, 1.0)
        spo2 = np.clip(cond.spo2_percent + dspo2, 0.0, 100.0)
        pi = cond.pi_percent * np.exp(dpi)
        process = cardiac_process(grid, hr, np.full(grid.size, cond.rr_min), p.hrv, rng)
        c = self._cardiac
        beat, resp = process.beat_phase, process.resp_phase_rad
        if c.t.size:
            beat_a, resp_a = np.interp(a, c.t, c.cols["beat"]), np.interp(a, c.t, c.cols["resp"])
            beat = beat + (beat_a - np.interp(a, process.t_s, beat))
            resp = resp + (resp_a - np.interp(a, process.t_s, resp))
            c.cut(a)
            keep = process.t_s >= a - _EPS_T
        else:  # the first segment keeps its lead-in (the pleth's transit-time delay)
            keep = np.ones(process.t_s.size, dtype=bool)
        c.append(process.t_s[keep], beat=beat[keep], resp=resp[keep])
        n0, n1 = self._noise_index(a), self._noise_index(b)
        noise = p.pleth.noise_sd * rng.standard_normal(max(n1 - n0, 0))
        if self._noise.size == 0:
            self._noise_k0 = n0
        self._noise = np.concatenate([self._noise[: max(n0 - self._noise_k0, 0)], noise])
        motion_noise = p.pleth.motion_sd * rng.standard_normal(grid.size)
        v.append(
            grid,
            hr=hr,
            spo2=spo2,
            pi=pi,
            off=np.full(grid.size, float(cond.sensor_off)),
            motion=np.full(grid.size, cond.motion),
            motion_noise=motion_noise,
            dhr=dhr,
            dspo2=dspo2,
            dpi=dpi,
        )
        self._gen_end = b

    def _pleth(self, t: FloatArray) -> FloatArray:
        p = self.params.pleth
        c, v = self._cardiac, self._vitals
        td = t - p.ptt_s  # the finger sees the beat a transit time after the R peak
        phase = np.interp(td, c.t, c.cols["beat"])
        phase -= np.floor(phase)
        n_table = self._table.size - 1
        x = phase * n_table
        i0 = np.minimum(x.astype(np.intp), n_table - 1)
        shape = self._table[i0] + (x - i0) * (self._table[i0 + 1] - self._table[i0])
        sin_r = np.sin(np.interp(td, c.t, c.cols["resp"]))
        amp = np.clip(v.held("pi", td) / p.pi_full_scale_percent, 0.0, 1.0)
        amp *= p.max_amplitude * (1.0 + p.resp_amplitude_mod * sin_r)
        out = p.dc_level + p.resp_baseline_mod * sin_r + amp * shape
        k = np.clip(
            np.rint(t * self.params.pleth_noise_hz).astype(np.int64) - self._noise_k0,
            0,
            max(self._noise.size - 1, 0),
        )
        if self._noise.size:
            out += self._noise[k]
        motion = v.held("motion", t)
        moving = motion > 0.0
        if np.any(moving):
            out[moving] += motion[moving] * np.interp(t[moving], v.t, v.cols["motion_noise"])
        np.clip(out, 0.0, 1.0, out=out)
        out[v.held("off", t) > 0.5] = p.sensor_off_level
        return np.asarray(out, dtype=np.float64)

    # -- for the monitors -----------------------------------------------------------------

    def _samples(
        self, after: float, before: float
    ) -> tuple[FloatArray, FloatArray, FloatArray, NDArray[np.bool_], NDArray[np.bool_]]:
        """World-grid samples with ``after < t < before``: t, spo2, pi, off, motion."""
        v = self._vitals
        i = int(np.searchsorted(v.t, after, side="right"))
        j = int(np.searchsorted(v.t, before - _EPS_T, side="left"))
        return (
            v.t[i:j],
            v.cols["spo2"][i:j],
            v.cols["pi"][i:j],
            v.cols["off"][i:j] > 0.5,
            v.cols["motion"][i:j] > 0.0,
        )

    def _beats_before(self, k_after: int, before: float) -> tuple[FloatArray, int]:
        """R peaks numbered above ``k_after`` (beat-phase integers) strictly before
        ``before``; returns their times and the last number."""
        c = self._cardiac
        hi = float(np.interp(before, c.t, c.cols["beat"]))
        k_last = math.ceil(hi) - 1
        k = np.arange(k_after + 1, k_last + 1, dtype=np.float64)
        return np.asarray(np.interp(k, c.cols["beat"], c.t)), max(k_last, k_after)

    def _beat_number(self, t: float) -> int:
        """The number of the last R peak strictly before ``t``."""
        c = self._cardiac
        return math.ceil(float(np.interp(t, c.t, c.cols["beat"]))) - 1


def _check_settings(s: SimulatorSettings, limits: SimulatorLimits) -> None:
    _check(limits, "heart_rate_bpm", s.heart_rate_bpm)
    _check(limits, "spo2_percent", s.spo2_percent)
    _check(limits, "resp_rate_min", s.resp_rate_min)
    _check_pair(limits, "nibp_mmhg", s.nibp_sys_mmhg, s.nibp_dia_mmhg)
    for channel, (sys, dia) in s.ibp.items():
        _check_channel(channel)
        _check(limits, "ibp_mmhg", sys)
        _check(limits, "ibp_mmhg", dia)
        if dia > sys:
            raise ValueError(f"IBP{channel} diastolic {dia:g} is above systolic {sys:g} mmHg")
    for channel, wave in s.ibp_wave.items():
        _check_channel(channel)
        if wave not in _IBP_WAVES:
            raise ValueError(f"IBP waveform {wave!r}: expected one of {', '.join(_IBP_WAVES)}")


def _check(limits: SimulatorLimits, what: str, value: float) -> None:
    low, high = getattr(limits, what)
    if not (isinstance(value, int | float) and math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{what} = {value!r} is outside the simulator's range [{low:g}, {high:g}]")


def _check_pair(limits: SimulatorLimits, what: str, sys: float, dia: float) -> None:
    _check(limits, what, sys)
    _check(limits, what, dia)
    if dia > sys:
        raise ValueError(f"diastolic {dia:g} mmHg is above systolic {sys:g} mmHg")


def _check_channel(channel: int) -> None:
    if channel not in (1, 2):
        raise ValueError(f"IBP channel {channel!r}: expected 1 or 2")


class _Simulator:
    """The ProSim 8's generator: :class:`PatientSimulatorMechanism` over the world."""

    def __init__(self, world: PatientWorld) -> None:
        self._world = world
        self.model = "ProSim 8"
        self.serial = f"PS8{world.seed % 10**7:07d}"
        self.firmware = "2.00.04"  # made up (no real IDENT text is known)

    def settings(self) -> SimulatorSettings:
        s = self._world._settings
        return replace(s, ibp=dict(s.ibp), ibp_wave=dict(s.ibp_wave))

    def _update(self, **changes: object) -> None:
        w = self._world
        new = replace(w._settings, **changes)  # type: ignore[arg-type]
        _check_settings(new, w.limits)
        w._settings = new
        w._change(
            replace(
                w._cond,
                hr_bpm=new.heart_rate_bpm,
                spo2_percent=new.spo2_percent,
                rr_min=new.resp_rate_min,
            )
        )

    def set_remote(self, remote: bool) -> None:
        self._update(remote=bool(remote))

    def set_heart_rate_bpm(self, bpm: float) -> None:
        self._update(heart_rate_bpm=float(bpm))

    def set_spo2_percent(self, percent: float) -> None:
        self._update(spo2_percent=float(percent))

    def set_resp_rate_min(self, per_min: float) -> None:
        self._update(resp_rate_min=float(per_min))

    def set_nibp_mmhg(self, systolic: float, diastolic: float) -> None:
        self._update(nibp_sys_mmhg=float(systolic), nibp_dia_mmhg=float(diastolic))

    def set_ibp_mmhg(self, channel: int, systolic: float, diastolic: float) -> None:
        _check_channel(channel)
        ibp = dict(self._world._settings.ibp)
        ibp[channel] = (float(systolic), float(diastolic))
        self._update(ibp=ibp)

    def set_ibp_wave(self, channel: int, wave: str) -> None:
        _check_channel(channel)
        waves = dict(self._world._settings.ibp_wave)
        waves[channel] = str(wave)
        self._update(ibp_wave=waves)


class _Feed:
    """One monitor model fed from the world: the samples and R peaks before now."""

    def __init__(self, world: PatientWorld, params: MonitorParams, t_on: float) -> None:
        self.stream = MonitorStream(params)
        self._world = world
        self._fed_t = t_on - _EPS_T  # samples after this have not been fed yet
        self._beat_k = world._beat_number(t_on)
        self.last: dict[str, float | bool] = {}

    def feed(self, before: float) -> None:
        w = self._world
        t, spo2, pi, off, motion = w._samples(self._fed_t, before)
        if t.size == 0:
            return
        r, self._beat_k = w._beats_before(self._beat_k, float(t[-1]) + _EPS_T)
        out = self.stream.push(t, spo2, pi, off, motion, r)
        self._fed_t = float(t[-1])
        if out.t_s.size:
            self.last = _last_update(out)


def _last_update(out: MonitorOutput) -> dict[str, float | bool]:
    return {
        "t_s": float(out.t_s[-1]),
        "hr_bpm": float(out.hr_bpm[-1]),
        "spo2_percent": float(out.spo2_percent[-1]),
        "pi_percent": float(out.pi_percent[-1]),
        "signal_loss": bool(out.signal_loss[-1]),
        "searching": bool(out.searching[-1]),
        "low_perfusion": bool(out.low_perfusion[-1]),
        "artifact": bool(out.artifact[-1]),
        "sensor_off": bool(out.sensor_off[-1]),
    }


def _value(last: dict[str, float | bool], key: str) -> float | None:
    value = last.get(key)
    if value is None or not math.isfinite(float(value)):
        return None
    return float(value)


class _Oximeter(_Feed):
    """An :class:`OximeterMechanism`: the world through one monitor's parameters."""

    def __init__(
        self,
        world: PatientWorld,
        params: MonitorParams,
        *,
        model: str,
        serial: str,
        firmware: str,
        t_on: float,
    ) -> None:
        super().__init__(world, params, t_on)
        self.params = params
        self.model = model
        self.serial = serial
        self.firmware = firmware
        self.extended_stream: _Feed | None = None

    def feed(self, before: float) -> None:
        super().feed(before)
        if self.extended_stream is not None:
            self.extended_stream.feed(before)

    def snapshot(self) -> OximeterSnapshot:
        w = self._world
        t = w.now()
        w._sync(t)
        last = self.last
        active = frozenset(
            a.condition
            for a in self.stream.alarms()
            if a.generated and math.isnan(a.t_end_s) and a.t3_s <= t
        )
        extended: dict[str, float | None] = {}
        if self.extended_stream is not None:
            ext = self.extended_stream.last
            extended = {
                "spo2_extended_percent": _value(ext, "spo2_percent"),
                "hr_extended_bpm": _value(ext, "hr_bpm"),
            }
        return OximeterSnapshot(
            t_s=t,
            spo2_percent=_value(last, "spo2_percent"),
            pulse_rate_bpm=_value(last, "hr_bpm"),
            pi_percent=_value(last, "pi_percent"),
            sensor_off=bool(last.get("sensor_off", False)),
            searching=bool(last.get("searching", not last)),
            low_perfusion=bool(last.get("low_perfusion", False)),
            artifact=bool(last.get("artifact", False)),
            signal_loss=bool(last.get("signal_loss", False)),
            alarms=active,
            extended=extended,
        )

    def pleth(self, t_s: Sequence[float]) -> list[float]:
        return [float(x) for x in self._world.pleth(t_s)]
