"""Acceptance of a syringe pump on the QA bench.

Five checks a biomedical department runs before a syringe pump goes (back) into
service: the pump answers and is the model we expect; it is programmed for the syringe
that is loaded; its flow accuracy at the intermediate rate meets the declared ±2 %
(IEC 60601-2-24 flow test, 2 h, trumpet curve from the second hour); its occlusion alarm
comes within the declared time (IEC 60601-2-24 occlusion test); and it behaves like its
digital twin over a varied timeline (rate steps, a bolus, a short occlusion).

On the packaged emulated bench every device is emulated and the clock is virtual, so the
2-hour flow test takes seconds; on a real bench (``--hil-bench=lab/bench.toml``) the same
tests run in real time. Every test is stored in the run store with its outcome
(``medtwin runs --db URL``, ``medtwin report RUN --db URL``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from medtwin.fixtures.devices import PumpHandle
from medtwin.fixtures.recorder import HilTest
from medtwin.hil.measurements import Measurement

if TYPE_CHECKING:  # annotations only: tests get these through fixtures
    from conftest import Declared
    from medtwin.device_models.syringes import SyringeSpec

# Marked asyncio explicitly so the suite runs in pytest-asyncio's strict mode too.
pytestmark = [pytest.mark.hil, pytest.mark.asyncio]
# The two checks that take seconds on a real bench are marked `quick` (pytest.ini): on a real
# bench run them first with `-m quick`, then the long ones (about 4 h) with `-m "not quick"`.
# A -k expression cannot pick them: every test's node id contains the module's name.

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


@pytest.mark.quick
async def test_pump_identifies_itself(pump: PumpHandle, declared: Declared) -> None:
    """The pump answers on its port and reports a model we accept, with its firmware."""
    identity = await pump.identify()
    assert identity.model in declared.models, (
        f"{pump.name} on {pump.port} reports model {identity.model!r}; "
        f"expected one of {', '.join(declared.models)}"
    )
    assert identity.firmware, f"{pump.name} reports no firmware version"
    # The same device as when the bench started (not swapped or re-addressed since).
    assert identity == pump.identity


@pytest.mark.quick
async def test_programmed_syringe_matches_the_bench(
    hil: HilTest, pump: PumpHandle, bench_syringe: SyringeSpec, declared: Declared
) -> None:
    """The diameter the pump is programmed with is that of the syringe on the bench."""
    programmed_mm = await pump.read_syringe_diameter()
    hil.check(
        Measurement(
            "syringe_diameter_error",
            "mm",
            f"programmed diameter − {bench_syringe.name} ({bench_syringe.inner_diameter_mm} mm)",
        ).in_range(-declared.diameter_resolution_mm, declared.diameter_resolution_mm),
        programmed_mm - bench_syringe.inner_diameter_mm,
    )


async def test_flow_accuracy_at_the_intermediate_rate(
    hil: HilTest, bench_syringe: SyringeSpec, declared: Declared
) -> None:
    """IEC 60601-2-24 flow test: mean flow error A over the second hour within ±2 %."""
    result = await hil.run_procedure(
        {
            "kind": "iec60601-2-24.flow",
            "syringe": bench_syringe.name,
            "rate_ml_h": declared.intermediate_rate_ml_h,
            "accuracy_percent": declared.accuracy_percent,
            "duration": "2h",
            "analysis_period": "60min-120min",
        }
    )
    result.assert_pass("mean_flow_error_a")
    # The trumpet curve is informative (no declared window limits) but must exist.
    trumpet = result.analysis["real"]["trumpet"]
    assert trumpet["windows"], "the flow test produced no trumpet curve"


async def test_occlusion_alarm_within_the_declared_time(hil: HilTest, declared: Declared) -> None:
    """IEC 60601-2-24 occlusion test at the intermediate rate: the alarm comes in time."""
    result = await hil.run_procedure(
        {
            "kind": "iec60601-2-24.occlusion",
            "rate_ml_h": declared.intermediate_rate_ml_h,
            "settle": "10min",
            "max_time_to_alarm": declared.max_time_to_occlusion_alarm,
            "collect": "5min",
        },
        # The time to alarm is resolved to the pump's sampling interval.
        sampling={"pump": "5s", "balance": "5s", "bench-io": "5s"},
    )
    result.assert_pass("occlusion_time_to_alarm")


async def test_no_drift_against_the_twin(hil: HilTest) -> None:
    """Rate steps, a bolus and a short occlusion: the pump must track its twin."""
    result = await hil.run_scenario(SCENARIOS / "rate-steps.toml")
    result.assert_no_drift()
