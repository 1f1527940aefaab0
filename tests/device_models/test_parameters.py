"""Parameters by dotted name, validation, and the syringe library."""

from __future__ import annotations

from pathlib import Path

import pytest
from medtwin.device_models.base import ParameterError, list_parameters
from medtwin.device_models.syringes import SyringeLibrary, UnknownSyringeError, default_library
from medtwin.device_models.system import SystemParams


def test_every_parameter_has_a_unit_and_a_description() -> None:
    for kind in ("syringe", "volumetric"):
        for info in list_parameters(SystemParams.nominal(kind)):  # type: ignore[arg-type]
            assert info.doc, info.name
            if isinstance(info.value, float) and not info.name.endswith(
                ("efficiency", "ripple_fraction")
            ):
                assert info.unit, info.name


def test_override_by_dotted_name() -> None:
    params = SystemParams.nominal().with_overrides(
        {"pump.drive.lead_mm": "1.0", "line.head_height_cm": 20}
    )
    assert params.pump.drive.lead_mm == 1.0  # type: ignore[union-attr]
    assert params.line.equilibrium_pressure_mmhg == pytest.approx(-20 * 0.73556)


def test_syringe_group_is_set_by_library_name() -> None:
    params = SystemParams.nominal().with_overrides({"pump.syringe": "Terumo 20 mL"})
    assert params.pump.syringe.inner_diameter_mm == pytest.approx(20.15)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("pump.drive.nonexistent", 1, "unknown parameter 'pump.drive.nonexistent'"),
        ("pump.drive.lead_mm", "fast", "expects a number"),
        ("pump.drive.microsteps", 2.5, "expects an integer"),
        ("pump.drive.lead_mm", -1, "below its minimum"),
        ("balance.temperature_c", 80, "above its maximum"),
        ("pump.drive", 3, "is a group"),
    ],
)
def test_bad_overrides_name_the_parameter(name: str, value: object, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        SystemParams.nominal().with_overrides({name: value})


def test_library_has_the_three_brands_in_all_sizes() -> None:
    library = default_library()
    for brand in ("BD Plastipak", "B. Braun Omnifix", "Terumo Syringe"):
        for size in (5, 10, 20, 30):
            spec = library.get(f"{brand} {size} mL")
            assert 10.0 < spec.inner_diameter_mm < 31.0
            assert spec.source
    assert library.get("bd plastipak 50ml").inner_diameter_mm == pytest.approx(26.59)


def test_unknown_syringe_suggests_close_names() -> None:
    with pytest.raises(UnknownSyringeError, match="did you mean 'BD Plastipak 50 mL'"):
        default_library().get("BD Plastipack 50 mL")


def test_user_syringe_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        '[[syringe]]\nname = "Lab 7 mL"\nnominal_volume_ml = 7\ninner_diameter_mm = 13.1\n'
        "barrel_compliance_ul_per_mmhg = 1.3\n",
        encoding="utf-8",
    )
    library = SyringeLibrary()
    library.load_file(path)
    assert library.get("lab 7 ml").max_fill_ml == 7.0
    path.write_text('[[syringe]]\nname = "Bad"\nnominal_volume_ml = 7\n', encoding="utf-8")
    with pytest.raises(ParameterError, match="missing field 'inner_diameter_mm'"):
        SyringeLibrary().load_file(path)
