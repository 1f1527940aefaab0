"""The syringe library: inner diameter, compliance, capacity and stopper mechanics per syringe.

A 1 % error in a syringe's inner diameter is a 2 % flow error, so the twin never guesses:
the diameter comes from this library (``data/syringes.toml``, every value with its
source, unverified ones marked ``nominal``). The stopper's friction (sliding and breakaway)
and the stiffness of the syringe assembly set the start-up delay (Neff et al. 2001,
Paediatr Anaesth 11(5):561-5; Neff et al. 2007, Eur J Anaesthesiol 24(7):602-8); forces of
this kind are what ISO 7886-2 Annex C measures. Entries that omit them get
:func:`nominal_stopper_mechanics` of their diameter. Users add their own syringes in a TOML file
of the same ``[[syringe]]`` tables and pass it with ``--syringes FILE`` (CLI) or a bench
file's ``syringe_library`` key; their entries take precedence over the shipped ones.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from medtwin.device_models.base import ParameterError, param

__all__ = [
    "SyringeLibrary",
    "SyringeSpec",
    "UnknownSyringeError",
    "default_library",
    "nominal_creep_resistance",
    "nominal_stopper_mechanics",
]

#: The nominal scaling of the stopper mechanics with the barrel's inner diameter ``ID`` (mm),
#: fitted to the published start-up delays (docs/models.md, "Start-up"), NOT measured per
#: syringe: sliding friction ``0.3 N/mm · ID`` (a stopper's friction grows with its sealing
#: perimeter; 8 N for a 50 mL barrel), breakaway (static) friction ``0.316 N/mm · ID``
#: (5 % above: a restart after a stop then waits 0.3-1.1 min at 1 mL/h, as after Neff's
#: pre-bolus), assembly stiffness ``420 N / ID`` (larger syringes have longer plungers and
#: softer stoppers; with the breakaway force it sets the first start-up's dead band).
_SLIDING_N_PER_MM = 0.3
_BREAKAWAY_N_PER_MM = 0.316
_STIFFNESS_N = 420.0
#: Creep resistance of the rim ``0.378 N·s/mm⁴ · ID³`` (unverified, fitted): with the
#: stiffness it sets the creep time ``η/k`` = 450 s for a 50 mL barrel (ID 26.59 mm) and
#: 39 s for a 10 mL one, scaling as ID⁴, so that the BD 50 mL syringe reaches steady flow
#: after about 25 min at 1 mL/h and 85 min at 0.1 mL/h and the BD 10 mL after about 4 min
#: (Neff et al. 2001; Neff et al. 2007, docs/models.md).
_CREEP_N_S_PER_MM4 = 0.378


def nominal_stopper_mechanics(inner_diameter_mm: float) -> tuple[float, float, float]:
    """(sliding friction N, breakaway force N, assembly stiffness N/mm) for a barrel of
    ``inner_diameter_mm``, by the nominal scaling rule (unverified, see the module doc),
    rounded to 0.1 as the shipped library carries them."""
    d = inner_diameter_mm
    return (
        round(_SLIDING_N_PER_MM * d, 1),
        round(_BREAKAWAY_N_PER_MM * d, 1),
        round(_STIFFNESS_N / d, 1),
    )


def nominal_creep_resistance(inner_diameter_mm: float) -> float:
    """The rim's creep resistance (N·s/mm) for a barrel of ``inner_diameter_mm`` by the
    nominal scaling rule (unverified, fitted to published start-up times), 3 significant
    digits as the shipped library carries it."""
    value = _CREEP_N_S_PER_MM4 * inner_diameter_mm**3
    return float(f"{value:.3g}")


class UnknownSyringeError(ParameterError):
    """No syringe of that name in the library."""


@dataclass(frozen=True)
class SyringeSpec:
    """One syringe model.

    ``inner_diameter_mm`` is the barrel's inner diameter (what converts plunger travel to
    volume); ``barrel_compliance_ul_per_mmhg`` the volume the barrel and plunger seal
    take up per mmHg of line pressure; ``max_fill_ml`` the graduated capacity.

    Stopper mechanics (the start-up model, docs/models.md): the plunger rod, the stopper
    and the pump's clamp form a spring of ``assembly_stiffness_n_per_mm`` between the drive
    and the stopper's sealing rim; the rim sticks until the spring's force reaches
    ``breakaway_force_n`` (static friction) and then slides against
    ``stopper_friction_n`` (sliding friction, also what a force-sensing pump measures on
    top of the pressure force and what it must overcome before it stalls). Below the
    breakaway force the rim creeps: it moves at ``F/creep_resistance_n_s_per_mm`` under the
    spring's force ``F`` (the seal's viscoelastic pre-sliding), so the outflow follows the
    drive with the time constant ``creep_resistance/assembly_stiffness`` until (at higher
    rates) the force reaches the breakaway.
    """

    name: str = param("BD Plastipak 50 mL", unit="", doc="library name")
    inner_diameter_mm: float = param(
        26.59, unit="mm", doc="barrel inner diameter", minimum=0.5, maximum=60.0
    )
    barrel_compliance_ul_per_mmhg: float = param(
        2.4, unit="µL/mmHg", doc="barrel + plunger seal compliance", minimum=0.0, maximum=100.0
    )
    max_fill_ml: float = param(60.0, unit="mL", doc="graduated capacity", minimum=0.0)
    nominal_volume_ml: float = param(50.0, unit="mL", doc="nominal size", minimum=0.0)
    stopper_friction_n: float = param(
        8.0, unit="N", doc="stopper sliding (dynamic) friction (nominal)", minimum=0.0
    )
    breakaway_force_n: float = param(
        8.4,
        unit="N",
        doc="stopper breakaway (static) friction, >= the sliding friction (nominal)",
        minimum=0.0,
    )
    assembly_stiffness_n_per_mm: float = param(
        15.8,
        unit="N/mm",
        doc="stiffness of plunger rod, stopper and clamp between drive and rim (nominal)",
        minimum=1e-3,
    )
    creep_resistance_n_s_per_mm: float = param(
        7110.0,
        unit="N·s/mm",
        doc="viscous resistance of the stopper's rim creeping below breakaway (nominal)",
        minimum=1e-3,
    )
    source: str = param("", unit="", doc="where the diameter comes from")
    source_compliance: str = param("", unit="", doc="where the compliance comes from")
    source_mechanics: str = param("", unit="", doc="where the friction and stiffness come from")

    @property
    def verified(self) -> bool:
        """False when the diameter is marked 'nominal' (unverified) in the library."""
        return bool(self.source) and not self.source.lower().startswith("nominal")

    @property
    def area_mm2(self) -> float:
        return math.pi * self.inner_diameter_mm**2 / 4.0

    @property
    def stick_travel_mm(self) -> float:
        """Drive travel that loads the assembly from rest to breakaway."""
        return self.breakaway_force_n / self.assembly_stiffness_n_per_mm

    @property
    def creep_time_s(self) -> float:
        """Time constant of the rim's creep, ``creep_resistance/assembly_stiffness``."""
        return self.creep_resistance_n_s_per_mm / self.assembly_stiffness_n_per_mm

    @property
    def breakaway_bolus_ml(self) -> float:
        """Volume the rim jumps forward at breakaway (the spring relaxes from the breakaway
        force to the sliding friction)."""
        excess = self.breakaway_force_n - self.stopper_friction_n
        return self.area_mm2 * excess / self.assembly_stiffness_n_per_mm / 1000.0


def _normalise(name: str) -> str:
    return " ".join(name.lower().replace("ml", " ml").split())


class SyringeLibrary:
    """Syringes by name; lookup ignores case and spacing (``"bd plastipak 50ml"`` works)."""

    def __init__(self, specs: list[SyringeSpec] | None = None) -> None:
        self._by_key: dict[str, SyringeSpec] = {}
        for spec in specs or []:
            self.add(spec)

    def add(self, spec: SyringeSpec) -> None:
        self._by_key[_normalise(spec.name)] = spec

    def _short_form(self, name: str) -> SyringeSpec | None:
        """``"Terumo 20 mL"`` for ``"Terumo Syringe 20 mL"``: brand + size, when unique."""
        words = _normalise(name).split()
        if len(words) != 3:
            return None
        brand, size = words[0], " ".join(words[-2:])
        matches = [
            spec
            for key, spec in self._by_key.items()
            if key.split()[0] == brand and key.endswith(size)
        ]
        return matches[0] if len(matches) == 1 else None

    @property
    def names(self) -> list[str]:
        return sorted(spec.name for spec in self._by_key.values())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _normalise(name) in self._by_key

    def get(self, name: str) -> SyringeSpec:
        """The syringe called ``name``.

        Raises
        ------
        UnknownSyringeError
            Naming the syringe and the closest known names.
        """
        try:
            return self._by_key[_normalise(name)]
        except KeyError:
            short = self._short_form(name)
            if short is not None:
                return short
            close = difflib.get_close_matches(name, self.names, n=3, cutoff=0.4)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownSyringeError(
                f"unknown syringe {name!r}{hint} (known: {len(self.names)} syringes; "
                "add your own with a [[syringe]] table in a --syringes file)"
            ) from None

    def load_file(self, path: str | Path) -> None:
        """Add every ``[[syringe]]`` table of a TOML file (later entries win)."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ParameterError(f"{path}: cannot read syringe table: {exc}") from exc
        self._load(data, str(path))

    def _load(self, data: dict[str, Any], source: str) -> None:
        entries = data.get("syringe")
        if not isinstance(entries, list):
            raise ParameterError(f"{source}: expected [[syringe]] tables")
        for index, entry in enumerate(entries):
            where = f"{source}: syringe[{index}]"
            try:
                name = str(entry["name"])
                sliding, breakaway, stiffness = nominal_stopper_mechanics(
                    float(entry["inner_diameter_mm"])
                )
                spec = SyringeSpec(
                    name=name,
                    inner_diameter_mm=float(entry["inner_diameter_mm"]),
                    barrel_compliance_ul_per_mmhg=float(entry["barrel_compliance_ul_per_mmhg"]),
                    max_fill_ml=float(entry.get("max_fill_ml", entry["nominal_volume_ml"])),
                    nominal_volume_ml=float(entry["nominal_volume_ml"]),
                    source=str(entry.get("source_inner_diameter", "")),
                    source_compliance=str(entry.get("source_compliance", "")),
                    stopper_friction_n=float(entry.get("stopper_friction_n", sliding)),
                    breakaway_force_n=float(entry.get("breakaway_force_n", breakaway)),
                    assembly_stiffness_n_per_mm=float(
                        entry.get("assembly_stiffness_n_per_mm", stiffness)
                    ),
                    creep_resistance_n_s_per_mm=float(
                        entry.get(
                            "creep_resistance_n_s_per_mm",
                            nominal_creep_resistance(float(entry["inner_diameter_mm"])),
                        )
                    ),
                    source_mechanics=str(
                        entry.get(
                            "source_mechanics",
                            "nominal: scaling rule of nominal_stopper_mechanics (not given "
                            "in the file)",
                        )
                    ),
                )
            except KeyError as exc:
                raise ParameterError(f"{where}: missing field {exc.args[0]!r}") from None
            except (TypeError, ValueError) as exc:
                raise ParameterError(f"{where}: {exc}") from None
            if not (0.5 <= spec.inner_diameter_mm <= 60.0):
                raise ParameterError(
                    f"{where}.inner_diameter_mm: {spec.inner_diameter_mm} mm is not a syringe "
                    "diameter (expected 0.5–60 mm)"
                )
            if spec.barrel_compliance_ul_per_mmhg < 0 or spec.max_fill_ml <= 0:
                raise ParameterError(f"{where}: compliance and max_fill_ml must be positive")
            if not (0.0 <= spec.stopper_friction_n <= spec.breakaway_force_n):
                raise ParameterError(
                    f"{where}: expected 0 <= stopper_friction_n <= breakaway_force_n (static "
                    f"friction is at least the sliding friction), got "
                    f"{spec.stopper_friction_n} and {spec.breakaway_force_n} N"
                )
            if spec.assembly_stiffness_n_per_mm <= 0:
                raise ParameterError(f"{where}.assembly_stiffness_n_per_mm: must be positive")
            if spec.creep_resistance_n_s_per_mm <= 0:
                raise ParameterError(f"{where}.creep_resistance_n_s_per_mm: must be positive")
            self.add(spec)


_DEFAULT: SyringeLibrary | None = None


def default_library() -> SyringeLibrary:
    """The shipped library (``device_models/data/syringes.toml``), loaded once."""
    global _DEFAULT
    if _DEFAULT is None:
        text = (
            resources.files("medtwin.device_models")
            .joinpath("data/syringes.toml")
            .read_text("utf-8")
        )
        library = SyringeLibrary()
        library._load(tomllib.loads(text), "device_models/data/syringes.toml")
        _DEFAULT = library
    return _DEFAULT
