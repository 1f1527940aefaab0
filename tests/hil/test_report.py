"""QA reports (``medtwin.hil.report``, ``medtwin report``) of real runs on the emulated benches.

The runs are made once per module on the shipped emulated benches (real protocol bytes on
ptys, virtual clock) with short scenarios written here; the HTML is then parsed with the
standard library's :mod:`html.parser` into a small tree that the tests query.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import re
import struct
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from medtwin.hil.calibration import calibration_in_force
from medtwin.hil.cli import main
from medtwin.hil.report import (
    SECTIONS,
    Report,
    build_report,
    save_report,
    write_report,
)
from medtwin.hil.report.figures import twin_band
from medtwin.hil.runner import RunResult
from medtwin.hil.store import CalibrationRecord, ChannelData, RunData, RunStatus, RunStore

# Every test but one reports on the module's ``runs``: five end-to-end runs on the virtual
# clock (about 5 s before the first test), so the module is left out of ``-m "not slow"``.
pytestmark = pytest.mark.slow

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

FLOW_20MIN = """
name = "flow-20min"
description = "a short IEC 60601-2-24 flow procedure for the report tests"
duration = "20min"

[sampling]
balance = "5s"
pump = "10s"
bench-io = "10s"

[[procedures]]
kind = "iec60601-2-24.flow"
syringe = "BD Plastipak 50 mL"
rate_ml_h = 5.0
duration = "20min"
interval = "30s"
analysis_period = "10min-20min"
windows_min = [1, 2, 5]
accuracy_percent = 2.0
"""

# 50 mL/h reaches the 500 mmHg threshold in about 1.5 min; the release comes at the
# declared maximum + 10 % (2 min + 22 min), then 5 min of bolus collection.
OCCLUSION_SHORT = """
name = "occlusion-short"
description = "occlusion at 50 mL/h for the report tests"
duration = "30min"

[sampling]
balance = "2s"
pump = "2s"
bench-io = "1s"

[[procedures]]
kind = "iec60601-2-24.occlusion"
rate_ml_h = 50.0
settle = "2min"
max_time_to_alarm = "20min"
collect = "5min"
max_bolus_ml = 2.0
"""

BOLUS_SHORT = """
name = "bolus-short"
description = "two 0.5 mL boluses for the report tests"
duration = "8min"

[sampling]
balance = "2s"
pump = "10s"
bench-io = "10s"

[[procedures]]
kind = "iec60601-2-24.bolus"
count = 2
volume_ml = 0.5
rate_ml_h = 120.0
spacing = "3min"
settle = "1min"
"""

# Hand-written steps, no procedure: after the start at 0 s (see write_scenario) ...
STEPS_AFTER_START = """
[[steps]]
at = "2min"
action = "occlude"

[[steps]]
at = "3min"
action = "release"

[[steps]]
at = "5min"
action = "stop"
"""


# --------------------------------------------------------------------------- fixtures


@dataclasses.dataclass(frozen=True)
class Runs:
    db_url: str
    ids: dict[str, int]

    def load(self, name: str) -> RunData:
        with RunStore(self.db_url, create=False) as store:
            return store.load_run(self.ids[name])


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory,
    write_toml: Callable[[Path, str, str], Path],
    write_scenario: Callable[..., Path],
    make_run: Callable[..., RunResult],
) -> Runs:
    directory = tmp_path_factory.mktemp("report-runs")
    db_url = f"sqlite:///{directory / 'runs.db'}"
    flow = write_toml(directory, "flow.toml", FLOW_20MIN)
    steps = write_scenario(
        directory,
        name="steps-only",
        duration="6min",
        sampling={"balance": "5s", "pump": "10s", "bench-io": "5s"},
        rate_ml_h=5.0,
        extra=STEPS_AFTER_START,
    )
    plan = {
        "nominal": ("emulated-nominal", flow),
        "drift": ("emulated-drift", flow),
        "occlusion": ("emulated-nominal", write_toml(directory, "occ.toml", OCCLUSION_SHORT)),
        "bolus": ("emulated-nominal", write_toml(directory, "bolus.toml", BOLUS_SHORT)),
        "steps": ("emulated-nominal", steps),
    }
    ids = {
        name: make_run(db_url, bench, scenario).run_id for name, (bench, scenario) in plan.items()
    }
    return Runs(db_url, ids)


@pytest.fixture(scope="module")
def reports(runs: Runs) -> dict[str, Report]:
    return {name: build_report(runs.load(name)) for name in runs.ids}


# --------------------------------------------------------------------------- HTML tree

_VOID = {"meta", "img", "br", "hr", "link", "input", "col", "area", "base", "source", "wbr"}


@dataclasses.dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = dataclasses.field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.iter()

    def find_all(self, tag: str, **attrs: str) -> list[Node]:
        return [
            n
            for n in self.iter()
            if n.tag == tag and all(n.attrs.get(k) == v for k, v in attrs.items())
        ]

    def by_id(self, element_id: str) -> Node | None:
        return next((n for n in self.iter() if n.attrs.get("id") == element_id), None)

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


class _TreeBuilder(HTMLParser):
    """A strict tree builder: every non-void element must be closed in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]
        self.doctype = ""

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in _VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        assert tag not in _VOID, f"end tag for void element {tag}"
        open_tag = self.stack.pop().tag
        assert open_tag == tag, f"</{tag}> closes <{open_tag}>"

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(document: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(document)
    builder.close()
    assert builder.stack == [builder.root], "unclosed elements: " + ", ".join(
        n.tag for n in builder.stack[1:]
    )
    assert builder.doctype.lower() == "doctype html"
    return builder.root


def section(tree: Node, key: str) -> Node:
    found = tree.find_all("section", id=key)
    assert len(found) == 1, key
    return found[0]


def table_rows(table: Node) -> list[Node]:
    body = table.find_all("tbody")[0]
    return body.find_all("tr")


def png_chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    assert png.startswith(PNG_SIGNATURE)
    chunks, offset = [], len(PNG_SIGNATURE)
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        kind = png[offset + 4 : offset + 8]
        chunks.append((kind, png[offset + 8 : offset + 8 + length]))
        offset += 12 + length
    return chunks


# --------------------------------------------------------------------------- the HTML


@pytest.mark.parametrize("name", ["nominal", "drift", "occlusion", "bolus", "steps"])
def test_every_section_is_there_and_every_image_is_an_embedded_png(
    reports: dict[str, Report], name: str
) -> None:
    report = reports[name]
    tree = parse(report.html)
    headings = [h.text() for h in tree.find_all("h2")]
    assert headings == [title for _, title in SECTIONS]
    images = tree.find_all("img")
    assert len(images) == len(report.figures) >= 2  # flow and pressure at least
    for img in images:
        prefix = "data:image/png;base64,"
        assert img.attrs["src"].startswith(prefix)
        png = base64.b64decode(img.attrs["src"][len(prefix) :], validate=True)
        assert png.startswith(PNG_SIGNATURE)
        width, height = struct.unpack(">II", png[16:24])
        assert width > 0
        assert height > 0
        assert (img.attrs["width"], img.attrs["height"]) == (str(width), str(height))
        assert img.attrs["alt"]


@pytest.mark.parametrize("name", ["nominal", "occlusion"])
def test_the_html_needs_nothing_outside_the_file(reports: dict[str, Report], name: str) -> None:
    tree = parse(reports[name].html)
    assert not tree.find_all("script")
    assert not tree.find_all("link")
    assert not tree.find_all("iframe")
    for node in tree.iter():
        for attribute in ("src", "href", "srcset", "poster", "data"):
            if attribute in node.attrs:
                value = node.attrs[attribute]
                assert value.startswith(("data:", "#")), (node.tag, attribute, value[:60])
    styles = "".join(n.text() for n in tree.find_all("style"))
    assert "url(" not in styles
    assert "@import" not in styles


def test_run_identity_scenario_and_bench_are_reported(
    runs: Runs, reports: dict[str, Report]
) -> None:
    run = runs.load("nominal")
    tree = parse(reports["nominal"].html)
    devices = tree.by_id("devices-table")
    assert devices is not None
    rows = {
        r.find_all("td")[0].text(): [c.text() for c in r.find_all("td")]
        for r in table_rows(devices)
    }
    for device in run.devices:
        row = rows[device.name]
        assert device.protocol in row
        assert device.port in row
        assert device.identity["model"] in row
        assert (device.identity["firmware"] or "—") in row
    run_text = section(tree, "run").text()
    assert run.info.started_utc.strftime("%Y-%m-%d %H:%M:%S UTC") in run_text
    assert run.info.software_version in run_text
    assert "virtual" in run_text
    assert "completed" in run_text
    scenario = section(tree, "scenario")
    assert run.info.scenario_sha256 in scenario.text()
    details = scenario.find_all("details")
    assert len(details) == 1
    assert details[0].find_all("pre")[0].text() == run.scenario_text
    assert "matches the stored SHA-256" in details[0].find_all("summary")[0].text()
    bench_details = section(tree, "devices").find_all("details")[0]
    assert bench_details.find_all("pre")[0].text() == run.bench_text


@pytest.mark.parametrize("name", ["nominal", "drift", "occlusion", "bolus"])
def test_the_verdict_table_shows_the_stored_outcomes_side_by_side(
    runs: Runs, reports: dict[str, Report], name: str
) -> None:
    run = runs.load(name)
    assert run.verdicts
    table = parse(reports[name].html).by_id("verdicts-table")
    assert table is not None
    disclosed = {v.measurement for v in run.verdicts if v.lower is None and v.upper is None}
    shown = {}
    for row in table_rows(table):
        for cell in row.find_all("td"):
            if "data-source" in cell.attrs:
                key = (row.attrs["data-measurement"], cell.attrs["data-source"])
                shown[key] = cell.attrs.get("data-outcome")
                if key[1] in ("real", "twin") and shown[key]:
                    # Coloured by its outcome class; a value without limits reads "info".
                    informational = key[0] in disclosed
                    # (INFO since the outcome exists; PASS in runs stored before it)
                    label = (
                        "info" if informational and shown[key] in ("PASS", "INFO") else shown[key]
                    )
                    assert label in cell.classes()
                    assert label in cell.text()
                    if label == "info":
                        assert "PASS" not in cell.text()
    stored = {(v.measurement, str(v.source)): str(v.outcome) for v in run.verdicts}
    assert shown == stored
    assert {s for _, s in shown} == {"real", "twin"}


def test_the_drift_bench_lists_its_drift_events_and_the_nominal_one_says_no_drift(
    runs: Runs, reports: dict[str, Report]
) -> None:
    drift_run = runs.load("drift")
    events = drift_run.summary["drift_events"]
    assert events, "the drift bench must drift within 20 min"
    tree = parse(reports["drift"].html)
    drift = section(tree, "drift")
    table = drift.by_id("drift-table")
    assert table is not None
    rows = table_rows(table)
    assert len(rows) == len(events)
    shown_channels = sorted(r.find_all("td")[1].text() for r in rows)
    assert shown_channels == sorted(e["channel"] for e in events)
    assert drift.by_id("drift-found") is not None
    assert "no drift" not in drift.text().lower()
    assert "DRIFT" in tree.find_all("header")[0].text()
    # Each event is drawn on some figure, numbered as in the table.
    captions = " ".join(f.text() for f in tree.find_all("figcaption"))
    marked = {int(n) for n in re.findall(r"#(\d+)", captions)}
    assert marked == set(range(1, len(events) + 1))
    assert reports["drift"].summary["drift"] is True

    nominal_tree = parse(reports["nominal"].html)
    nominal = section(nominal_tree, "drift")
    assert runs.load("nominal").summary["drift_events"] == []
    assert nominal.by_id("drift-table") is None
    assert nominal.by_id("no-drift") is not None
    assert "no drift" in nominal.text().lower()
    assert reports["nominal"].summary["drift"] is False


def test_sections_that_do_not_apply_say_so_in_one_line(reports: dict[str, Report]) -> None:
    expected_na = {
        "nominal": {"occlusion", "bolus"},
        "occlusion": {"startup", "trumpet", "bolus"},
        "bolus": {"startup", "trumpet", "occlusion"},
        "steps": {"verdicts", "startup", "trumpet", "occlusion", "bolus"},
    }
    for name, keys in expected_na.items():
        report = reports[name]
        tree = parse(report.html)
        not_applying = {s.key for s in report.sections if not s.applies}
        assert not_applying == keys, name
        for key in keys:
            node = section(tree, key)
            assert node.attrs["data-applies"] == "false"
            paragraphs = [c for c in node.children if isinstance(c, Node) and c.tag != "h2"]
            assert len(paragraphs) == 1, (name, key)
            assert "na" in paragraphs[0].classes()
            assert paragraphs[0].text().startswith("No ")
    steps = parse(reports["steps"].html)
    assert "no procedures" in section(steps, "verdicts").text()


def test_flow_procedure_gives_startup_and_trumpet_curves_with_the_declared_limits(
    runs: Runs, reports: dict[str, Report]
) -> None:
    report = reports["drift"]
    assert {f.name for f in report.figures} == {"startup", "trumpet", "flow", "pressure"}
    tree = parse(report.html)
    trumpet = tree.by_id("trumpet-table")
    assert trumpet is not None
    stored = runs.load("drift").summary["procedures"][0]["analysis"]
    rows = {
        r.find_all("td")[0].text(): [c.text() for c in r.find_all("td")]
        for r in table_rows(trumpet)
    }
    assert set(rows) >= {"1", "2", "5", "A (mean error)"}
    for window in ("1", "2", "5"):
        real = stored["real"]["trumpet"]["windows"][window]
        twin = stored["twin"]["trumpet"]["windows"][window]
        assert rows[window][1:] == [
            f"{real['ep_max']:+.4g}",
            f"{real['ep_min']:+.4g}",
            f"{twin['ep_max']:+.4g}",
            f"{twin['ep_min']:+.4g}",
        ]
    assert rows["A (mean error)"][1] == f"{stored['real']['trumpet']['mean_error_percent']:+.4g}"
    analysis = report.summary["analysis"][0]
    assert analysis["origin"] == "stored"
    assert analysis["analysis"]["real"]["trumpet"]["windows"]["5"]["ep_max"] == pytest.approx(
        stored["real"]["trumpet"]["windows"]["5"]["ep_max"], rel=0, abs=0
    )
    # The drift bench delivers about 2 % less than the twin: its A fails the ±2 % claim
    # or comes close, and the twin's sits at zero.
    assert stored["real"]["trumpet"]["mean_error_percent"] < -1.5
    assert abs(stored["twin"]["trumpet"]["mean_error_percent"]) < 0.1
    trumpet_caption = tree.find_all("figure", id="fig-trumpet")[0].text()
    assert "declared accuracy" in trumpet_caption


def test_occlusion_results_pressure_plot_and_alarms(runs: Runs, reports: dict[str, Report]) -> None:
    run = runs.load("occlusion")
    analysis = run.summary["procedures"][0]["analysis"]
    assert analysis["real"]["time_to_alarm_s"] is not None
    tree = parse(reports["occlusion"].html)
    table = tree.by_id("occlusion-table")
    assert table is not None
    rows = {
        r.find_all("td")[0].text(): [c.text() for c in r.find_all("td")[1:]]
        for r in table_rows(table)
    }
    assert rows["time to alarm (s)"] == [
        f"{analysis['real']['time_to_alarm_s']:.5g}",
        f"{analysis['twin']['time_to_alarm_s']:.5g}",
    ]
    assert rows["unintended bolus volume (mL)"][0] == f"{analysis['real']['bolus_volume_ml']:.5g}"
    caption = tree.find_all("figure", id="fig-pressure")[0].text()
    assert "1 occlusion(s) shaded" in caption
    assert "alarm(s) raised" in caption
    log = tree.by_id("events-table")
    assert log is not None
    kinds = [r.find_all("td")[1].text() for r in table_rows(log)]
    assert kinds == [e.kind for e in run.events]
    assert "alarm" in kinds


def test_bolus_results_table(runs: Runs, reports: dict[str, Report]) -> None:
    analysis = runs.load("bolus").summary["procedures"][0]["analysis"]
    table = parse(reports["bolus"].html).by_id("bolus-table")
    assert table is not None
    rows = [[c.text() for c in r.find_all("td")] for r in table_rows(table)]
    assert len(rows) == 2 + 2  # two boluses, the mean and the worst
    for i in range(2):
        assert rows[i][2] == f"{analysis['real']['measured_mass_g'][i]:.5g}"
        assert rows[i][5] == f"{analysis['twin']['deviation_percent'][i]:+.4g}"
    assert rows[2][0] == "mean deviation"
    assert rows[2][3] == f"{analysis['real']['mean_deviation_percent']:+.4g}"


def test_residual_statistics_are_the_comparators(runs: Runs, reports: dict[str, Report]) -> None:
    run = runs.load("drift")
    table = parse(reports["drift"].html).by_id("residuals-table")
    assert table is not None
    rows = {
        r.find_all("td")[0].text(): [c.text() for c in r.find_all("td")] for r in table_rows(table)
    }
    assert set(rows) == set(run.summary["channels"])
    flow = run.summary["channels"]["balance.flow_ml_h"]
    assert rows["balance.flow_ml_h"][6] == f"{flow['rms']:.4g}"


# --------------------------------------------------------------------------- without a summary


def _without_analysis(run: RunData, *, keep_until_s: float | None = None) -> RunData:
    """The run as an interrupted run leaves it: no summary, no verdicts, maybe cut short."""
    channels = run.channels
    if keep_until_s is not None:
        channels = [
            ChannelData(
                id=ch.id,
                name=ch.name,
                unit=ch.unit,
                source=ch.source,
                device=ch.device,
                t_s=ch.t_s[ch.t_s <= keep_until_s],
                values=ch.values[ch.t_s <= keep_until_s],
            )
            for ch in channels
        ]
    info = dataclasses.replace(run.info, status=RunStatus.INTERRUPTED)
    return dataclasses.replace(run, info=info, summary=None, verdicts=[], channels=channels)


def test_a_run_without_stored_analysis_gets_its_curves_computed_from_the_balance(
    runs: Runs,
) -> None:
    run = runs.load("drift")
    report = build_report(_without_analysis(run))
    analysis = report.summary["analysis"][0]
    assert analysis["origin"] == "recomputed"
    stored = run.summary["procedures"][0]["analysis"]
    for source in ("real", "twin"):
        ours, theirs = analysis["analysis"][source], stored[source]
        # Same inputs, same functions: the same numbers to the last bit.
        assert ours["density_g_ml"] == theirs["density_g_ml"]
        assert ours["trumpet"] == theirs["trumpet"]
        assert ours["startup"] == theirs["startup"]
    tree = parse(report.html)
    assert "computed by the report" in section(tree, "trumpet").text()
    assert {"startup", "trumpet"} <= {f.name for f in report.figures}
    # Residual statistics and drift events come from the channels and the event log.
    assert report.summary["residuals"]["source"] == "report"
    drift_in_log = [e for e in run.events if e.kind == "drift"]
    assert len(report.summary["drift_events"]) == len(drift_in_log) > 0
    assert "computed by the report" in section(tree, "residuals").text()
    assert "No verdicts" in section(tree, "verdicts").text()


def test_a_run_cut_short_shows_its_start_up_and_why_there_is_no_trumpet(runs: Runs) -> None:
    run = _without_analysis(runs.load("nominal"), keep_until_s=300.0)
    report = build_report(run)
    tree = parse(report.html)
    assert "startup" in {f.name for f in report.figures}
    assert "trumpet" not in {f.name for f in report.figures}
    trumpet = section(tree, "trumpet").text()
    assert "could not be analysed" in trumpet
    assert "min" in trumpet  # the analysis error names the lengths involved
    startup = report.summary["analysis"][0]["analysis"]["real"]["startup"]
    assert startup["t_min"][-1] == pytest.approx(5.0)


def test_an_interrupted_occlusion_run_says_its_procedure_was_not_analysed(runs: Runs) -> None:
    report = build_report(_without_analysis(runs.load("occlusion")))
    tree = parse(report.html)
    occlusion = section(tree, "occlusion")
    assert occlusion.attrs["data-applies"] == "true"
    assert occlusion.by_id("occlusion-table") is None
    text = occlusion.text()
    assert "No analysis of procedures[0] (iec60601-2-24.occlusion)" in text
    assert "interrupted" in text
    assert "interrupted" in section(tree, "verdicts").text()
    # The pressure plot, the alarms and the event log do not depend on the analysis.
    assert "pressure" in {f.name for f in report.figures}
    assert report.summary["analysis"][0]["origin"] == "none"


# --------------------------------------------------------------------------- calibration


def _calibration(value: float, *, version: int = 1) -> CalibrationRecord:
    return CalibrationRecord(
        id=version,
        device_key="NE-1000/SN1",
        version=version,
        created_utc=datetime(2025, 1, 1, tzinfo=UTC),
        run_id=None,
        params={"pump.syringe.inner_diameter_mm": {"value": value, "stderr": 0.002}},
        correlation=None,
        residual_rms_before=0.2,
        residual_rms_after=0.01,
        note="fitted on the drift bench",
    )


def test_calibration_section(runs: Runs, reports: dict[str, Report]) -> None:
    nominal = section(parse(reports["nominal"].html), "calibration").text()
    assert "nominal twin, no calibration" in nominal
    assert reports["nominal"].summary["calibration"] is None

    run = runs.load("nominal")
    diameter = run.twin_params["pump"]["syringe"]["inner_diameter_mm"]
    in_force = build_report(run, calibration=_calibration(diameter))
    text = section(parse(in_force.html), "calibration").text()
    assert "In force" in text
    assert "NE-1000/SN1" in text
    table = parse(in_force.html).by_id("calibration-table")
    assert table is not None
    cells = [c.text() for c in table_rows(table)[0].find_all("td")]
    assert cells == [
        "pump.syringe.inner_diameter_mm",
        f"{diameter:.8g}",
        "0.002",
        f"{diameter:.8g}",
    ]
    assert in_force.summary["calibration"]["matches_run_twin"] is True

    other = build_report(run, calibration=_calibration(26.3241))
    assert "differs from the twin parameters" in section(parse(other.html), "calibration").text()
    assert other.summary["calibration"]["matches_run_twin"] is False


def test_calibration_in_force_is_the_version_the_twin_used(runs: Runs, tmp_path: Path) -> None:
    run = runs.load("nominal")
    diameter = run.twin_params["pump"]["syringe"]["inner_diameter_mm"]
    pump = next(d for d in run.devices if d.kind == "pump")
    devices = [
        dataclasses.replace(d, identity={**d.identity, "serial": "SN1"}) if d is pump else d
        for d in run.devices
    ]
    calibrated = dataclasses.replace(
        run,
        devices=devices,
        bench_text=run.bench_text.replace('calibration = "none"', 'calibration = "latest"'),
    )
    assert 'calibration = "latest"' in calibrated.bench_text
    with RunStore(f"sqlite:///{tmp_path / 'cal.db'}") as store:
        assert calibration_in_force(store, calibrated) is None  # nothing filed yet
        params = {"pump.syringe.inner_diameter_mm": {"value": diameter, "stderr": 0.002}}
        used = store.save_calibration("NE-1000/SN1", params=params)
        store.save_calibration(  # newer, but not what this run's twin used
            "NE-1000/SN1", params={"pump.syringe.inner_diameter_mm": {"value": 26.0, "stderr": 0.1}}
        )
        store.save_calibration("NE-1000/OTHER", params=params)
        found = calibration_in_force(store, calibrated)
        assert found is not None
        assert (found.device_key, found.version) == ("NE-1000/SN1", used.version)
        # A pump that reports no serial (the NE-1000) is found under the key
        # `medtwin calibrate` files it by.
        from medtwin.hil.calibration import run_device_key

        serial_less = dataclasses.replace(run, bench_text=calibrated.bench_text)
        key = run_device_key(serial_less)
        assert calibration_in_force(store, serial_less) is None
        filed = store.save_calibration(key, params=params)
        found = calibration_in_force(store, serial_less)
        assert found is not None
        assert (found.device_key, found.id) == (key, filed.id)
        # A bench that does not ask for a calibration has a nominal twin.
        assert (
            calibration_in_force(store, dataclasses.replace(calibrated, bench_text=run.bench_text))
            is None
        )


# --------------------------------------------------------------------------- files


def test_rendering_is_deterministic_and_pngs_carry_no_software_or_time(
    runs: Runs, reports: dict[str, Report]
) -> None:
    again = build_report(runs.load("occlusion"))
    assert again.html == reports["occlusion"].html
    assert again.summary == reports["occlusion"].summary
    for figure in again.figures:
        kinds = [kind for kind, _ in png_chunks(figure.png)]
        assert kinds[0] == b"IHDR"
        assert kinds[-1] == b"IEND"
        assert b"tIME" not in kinds
        texts = [
            data.split(b"\0", 1)[0]
            for kind, data in png_chunks(figure.png)
            if kind in (b"tEXt", b"iTXt", b"zTXt")
        ]
        assert texts == [b"Title"]


def test_figures_are_not_left_open_in_pyplot(runs: Runs) -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    build_report(runs.load("bolus"))
    assert plt.get_fignums() == before


def test_write_report_with_out_dir_writes_pngs_and_summary_beside_the_html(
    runs: Runs, tmp_path: Path
) -> None:
    run = runs.load("drift")
    out_dir = tmp_path / "qa" / "run"
    html = write_report(run, out_dir / "report.html", out_dir=out_dir)
    assert html == out_dir / "report.html"
    report = build_report(run)
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == sorted(["report.html", "summary.json", *(f.filename for f in report.figures)])
    assert html.read_text(encoding="utf-8") == report.html
    for figure in report.figures:
        assert (out_dir / figure.filename).read_bytes() == figure.png
    summary = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary == report.summary
    assert summary["run"]["id"] == run.info.id
    assert [v["outcome"] for v in summary["verdicts"]] == [str(v.outcome) for v in run.verdicts]
    assert len(summary["drift_events"]) == len(run.summary["drift_events"])
    assert (
        summary["analysis"][0]["analysis"]["real"]["trumpet"]["windows"]["1"]["ep_max"] is not None
    )


def test_an_existing_report_is_replaced_only_when_the_new_one_is_complete(
    runs: Runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = build_report(runs.load("bolus"))
    target = tmp_path / "report.html"
    target.write_text("the previous report", encoding="utf-8")
    out_dir = tmp_path / "new" / "figures"

    import medtwin.hil.files as module

    calls = []
    real_fsync = module.os.fsync

    def failing_fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == len(report.figures) + 2:  # the HTML, after the PNGs and summary
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(module.os, "fsync", failing_fsync)
    with pytest.raises(module.ConfigurationError, match="No space left on device"):
        save_report(report, target, out_dir=out_dir)
    assert target.read_text(encoding="utf-8") == "the previous report"
    assert not (tmp_path / "new").exists()  # created for this report, removed again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]

    monkeypatch.setattr(module.os, "fsync", real_fsync)
    save_report(report, target, out_dir=out_dir)
    assert target.read_text(encoding="utf-8") == report.html
    assert not list(tmp_path.rglob("*.partial"))


# --------------------------------------------------------------------------- the CLI


def test_cli_writes_report_run_html_in_the_working_directory(
    runs: Runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    run_id = runs.ids["occlusion"]
    result = CliRunner().invoke(main, ["report", str(run_id), "--db", runs.db_url])
    assert result.exit_code == 0, result.output
    expected = tmp_path / f"report-{run_id}.html"
    assert result.output.strip() == str(expected.resolve())
    assert sorted(p.name for p in tmp_path.iterdir()) == [expected.name]
    tree = parse(expected.read_text(encoding="utf-8"))
    assert [h.text() for h in tree.find_all("h2")] == [t for _, t in SECTIONS]


def test_cli_json_and_out_dir(runs: Runs, tmp_path: Path) -> None:
    run_id = runs.ids["nominal"]
    out_dir = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["report", str(run_id), "--db", runs.db_url, "--out-dir", str(out_dir), "--json"]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["run_id"] == run_id
    assert Path(document["html"]) == (out_dir / f"report-{run_id}.html").resolve()
    assert sorted(Path(p).name for p in document["pngs"]) == [
        "flow.png",
        "pressure.png",
        "startup.png",
        "trumpet.png",
    ]
    for png in document["pngs"]:
        assert Path(png).read_bytes().startswith(PNG_SIGNATURE)
    assert document["summary"] == json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
    assert document["summary"]["outcome"]["real"] in ("PASS", "MARGINAL", "FAIL")

    named = tmp_path / "named.html"
    result = CliRunner().invoke(
        main, ["report", str(run_id), "--db", runs.db_url, "--out", str(named), "--json"]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["pngs"] == []
    assert document["summary_json"] is None
    assert named.is_file()


def test_cli_errors_exit_2_and_write_nothing(
    runs: Runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cli = CliRunner()
    db = runs.db_url
    unknown = max(runs.ids.values()) + 100

    result = cli.invoke(main, ["report", str(unknown), "--db", db, "--out-dir", "out"])
    assert result.exit_code == 2
    assert "RUN" in result.output
    assert f"no run {unknown}" in result.output

    missing_db = tmp_path / "missing.db"
    result = cli.invoke(main, ["report", "1", "--db", f"sqlite:///{missing_db}"])
    assert result.exit_code == 2
    assert "--db" in result.output
    assert not missing_db.exists()

    not_a_store = tmp_path / "notes.db"
    not_a_store.write_bytes(b"not a database at all" * 10)
    result = cli.invoke(main, ["report", "1", "--db", f"sqlite:///{not_a_store}"])
    assert result.exit_code == 2
    assert "--db" in result.output

    result = cli.invoke(
        main, ["report", "1", "--db", "postgresql+psycopg://nobody@127.0.0.1:9/none"]
    )
    assert result.exit_code == 2
    assert "--db" in result.output

    result = cli.invoke(
        main, ["report", str(runs.ids["nominal"]), "--db", db, "--out", "no/such/dir/r.html"]
    )
    assert result.exit_code == 2
    assert "--out" in result.output

    (tmp_path / "a-dir").mkdir()
    result = cli.invoke(main, ["report", str(runs.ids["nominal"]), "--db", db, "--out", "a-dir"])
    assert result.exit_code == 2
    assert "directory" in result.output

    result = cli.invoke(
        main, ["report", str(runs.ids["nominal"]), "--db", db, "--out-dir", "notes.db"]
    )
    assert result.exit_code == 2
    assert "--out-dir" in result.output

    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-dir", "notes.db"]
    assert not any((tmp_path / "a-dir").iterdir())
    assert not_a_store.read_bytes() == b"not a database at all" * 10


# --------------------------------------------------------------------------- plotting helper


def test_long_traces_are_reduced_to_an_envelope_that_keeps_extremes_and_gaps() -> None:
    from medtwin.hil.report.figures import _MAX_PLOT_POINTS, _envelope

    # A seeded generator: the test must see the same trace every time.
    rng = np.random.default_rng(20240611)
    t_s = np.arange(700_000, dtype=np.float64) * 0.5
    values = rng.normal(size=t_s.size)
    values[123_457] = 50.0  # one spike
    values[400_000:420_000] = np.nan  # a device lost for 10 000 s
    t_out, v_out = _envelope(t_s, values)
    assert t_out.size == v_out.size <= _MAX_PLOT_POINTS
    assert np.nanmax(v_out) == 50.0
    assert np.nanmin(v_out) == np.nanmin(values)
    in_gap = (t_out > 200_200) & (t_out < 209_800)
    assert in_gap.any()
    assert np.isnan(v_out[in_gap]).all()
    short_t, short_v = _envelope(t_s[:100], values[:100])
    assert np.array_equal(short_t, t_s[:100])
    assert np.array_equal(short_v, values[:100])
    assert math.isfinite(float(np.nanmean(v_out)))


def test_the_demo_report_draws_the_twins_band_and_the_drift_leaves_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # medtwin demo: the drifting pump fails, and the report shows real, twin and the
    # twin's band; the mass residual leaves the band (the drift is outside what the twin
    # predicts), and the twin's prediction SD is stored with the run.
    monkeypatch.chdir(tmp_path)
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    result = CliRunner().invoke(main, ["demo", "--db", db])
    assert result.exit_code == 0, result.output
    assert "DRIFT" in result.output
    (html_file,) = tmp_path.glob("report-*.html")
    tree = parse(html_file.read_text(encoding="utf-8"))
    flow = section(tree, "flow")
    captions = " ".join(f.text() for f in flow.find_all("figcaption"))
    assert "Shaded: the twin's band" in captions
    assert "balance.mass_g widened to k times the twin's prediction standard deviation" in (
        captions
    )
    with RunStore(db, create=False) as store:
        run = store.load_run(1)
    sd = run.channel("balance.mass_g.sd", source="twin")
    assert np.all(np.isfinite(sd.values))
    assert np.all(sd.values > 0)
    band = twin_band(run, "balance.mass_g")
    assert band is not None
    _, twin, half = band
    # the scenario declares 0.01 g + 1 % of the twin; the nominal twin's noise is far less
    np.testing.assert_allclose(half, np.maximum(0.01 + 0.01 * np.abs(twin), 3.0 * sd.values))
    real = run.channel("balance.mass_g", source="real")
    assert real is not None
    outside = np.abs(real.values - twin) > half
    assert outside[-100:].all()  # by the end of the run the pump is far outside the band
    assert not outside[:100].any()  # and at the start well inside it
