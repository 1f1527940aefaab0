"""The sections of a report, one module per section (or per family of sections), and the
table that builds them in the order of :data:`medtwin.hil.report.model.SECTIONS`.

Each builder takes the report context and returns ``(applies, body_html)``: every section is
always present, and one that does not apply to the run says so in one line.
"""

from __future__ import annotations

from medtwin.hil.report.model import _BOLUS_KIND, _FLOW_KIND, _OCCLUSION_KIND
from medtwin.hil.report.sections._parts import _per_procedure
from medtwin.hil.report.sections.bolus import _BOLUS_NOTE, _bolus_part
from medtwin.hil.report.sections.calibration import _section_calibration
from medtwin.hil.report.sections.drift import _section_drift, _section_residuals
from medtwin.hil.report.sections.events import _section_events
from medtwin.hil.report.sections.flow import _section_flow, _startup_part, _trumpet_part
from medtwin.hil.report.sections.pressure import _OCCLUSION_NOTE, _occlusion_part, _section_pressure
from medtwin.hil.report.sections.run import _section_devices, _section_run, _section_scenario
from medtwin.hil.report.sections.verdicts import _section_verdicts

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
