"""The one gravimetric policy: d from water temperature, Tanaka density and air buoyancy,
the same in the CLI, the procedures and the report."""

from __future__ import annotations

import pytest
from medtwin.device_models.balance import BalanceParams
from medtwin.drivers.errors import AnalysisError
from medtwin.hil.analysis import iec60601_2_24 as iec
from medtwin.hil.analysis.gravimetry import GravimetricPolicy, policy_from_balance_params


def test_default_d_is_water_at_20c_with_the_iso_4787_buoyancy_correction() -> None:
    policy = GravimetricPolicy()
    # Tanaka et al. (2001) Table 1 at 20 °C: 998.2067 kg/m³ (air-free water).
    assert policy.water_density_g_ml == pytest.approx(0.9982067, abs=1e-7)
    # ISO 4787 / ISO 8655-6: V = W·(1/(ρ_W − ρ_A))·(1 − ρ_A/ρ_B) with ρ_A = 1.2 kg/m³ and
    # ρ_B = 8000 kg/m³, so d = W/V = (ρ_W − ρ_A)/(1 − ρ_A/ρ_B), computed here independently.
    rho_w, rho_a, rho_b = 0.9982067, 0.0012, 8.0
    assert policy.density_g_ml == pytest.approx((rho_w - rho_a) / (1 - rho_a / rho_b), abs=1e-7)
    assert policy.density_g_ml == pytest.approx(0.997156, abs=1e-6)
    # The analyses' own default is the policy's d, not the 0.998 of the old CLI.
    assert policy.density_g_ml == iec.DEFAULT_DENSITY_G_ML


def test_temperature_buoyancy_override_and_evaporation() -> None:
    warm = GravimetricPolicy(water_temperature_c=25.0, air_buoyancy=False)
    assert warm.density_g_ml == pytest.approx(0.9970470, abs=1e-7)  # Tanaka at 25 °C
    assert warm.buoyancy_factor == 1.0
    given = GravimetricPolicy(density_override_g_ml=0.998, evaporation_g_h=0.002)
    assert given.density_g_ml == 0.998
    assert "given" in given.label()
    assert "evaporation 0.002 g/h" in given.label()
    assert "no buoyancy correction" in warm.describe()
    assert "air buoyancy" in GravimetricPolicy().describe()


def test_round_trip_through_the_stored_dict() -> None:
    policy = GravimetricPolicy(water_temperature_c=22.5, evaporation_g_h=0.01)
    stored = policy.as_dict()
    assert stored["density_g_ml"] == policy.density_g_ml
    assert stored["basis"] == "policy"
    assert GravimetricPolicy.from_dict(stored) == policy


def test_the_runs_policy_is_the_twins_balance() -> None:
    # The runner and the report build d from the twin's balance: the same number the
    # twin's physics uses for displayed grams per mL.
    for params in (BalanceParams(), BalanceParams(temperature_c=24.0, air_buoyancy=False)):
        assert policy_from_balance_params(params).density_g_ml == pytest.approx(
            params.grams_per_ml, rel=1e-15
        )
    stored = {"temperature_c": 24.0, "air_buoyancy": False}
    assert policy_from_balance_params(stored).density_g_ml == pytest.approx(
        BalanceParams(temperature_c=24.0, air_buoyancy=False).grams_per_ml, rel=1e-15
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"water_temperature_c": 45.0}, "0–40 °C"),
        ({"water_temperature_c": float("nan")}, "water temperature"),
        ({"evaporation_g_h": -1.0}, "evaporation loss"),
        ({"density_override_g_ml": 0.0}, "density d"),
        ({"air_density_g_ml": 9.0}, "air density"),
    ],
)
def test_invalid_policies_are_named(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(AnalysisError, match=message):
        GravimetricPolicy(**kwargs)  # type: ignore[arg-type]
