"""Nothing a user has to type or read is cut: names in narrow tables, piped parameter lists,
the "see more" hint, and one way of writing limits everywhere (issue 18 §3)."""

from __future__ import annotations

import ast
import re
import shlex
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from medtwin.device_models.base import list_parameters
from medtwin.device_models.system import SystemParams
from medtwin.hil.cli import main
from medtwin.hil.commands import runs as runs_command
from medtwin.hil.commands._render import verdict_table
from medtwin.hil.measurements import Measurement, Verdict
from medtwin.hil.outcomes import Outcome, format_limits
from medtwin.hil.store import RunInfo, VerdictRecord
from rich.console import Console

LONG_NAMES = (
    "mean_flow_error_intermediate_rate_percent",
    "occlusion_time_to_alarm_at_minimum_rate",
    "ep_max_2min",
)


def render(renderable: object, width: int) -> str:
    console = Console(width=width, record=True, color_system=None)
    with console.capture() as captured:
        console.print(renderable)
    return captured.get()


def verdicts() -> list[Verdict]:
    out = []
    for name in LONG_NAMES:
        measurement = Measurement(name, "%").in_range(-2, 2).with_marginal(-1.8, 1.8)
        out.append(measurement.measure(1.9, source="real"))
    return [
        Verdict(v.name, v.value, v.units, v.outcome, v.source, v.lower, v.upper,
                v.marginal_lower, v.marginal_upper, note="a long note that explains the verdict")
        for v in out
    ]  # fmt: skip


@pytest.mark.parametrize("width", [60, 80])
def test_verdict_table_keeps_every_measurement_name_whole(width: int) -> None:
    text = render(verdict_table(verdicts(), width=width), width)
    for name in LONG_NAMES:
        assert name in text, text
    assert "…" not in text.replace(" … ", "")  # the only ellipsis is the one in the limits
    assert max(len(line) for line in text.splitlines()) <= width


def test_a_narrow_verdict_table_drops_the_note_first_and_keeps_value_limits_outcome() -> None:
    wide = render(verdict_table(verdicts(), width=200), 200)
    narrow = render(verdict_table(verdicts(), width=80), 80)
    assert "a long note" in wide
    assert "note" not in narrow
    for word in ("1.9", "−2 … 2 %", "MARGINAL"):
        assert word in narrow, narrow


@pytest.mark.parametrize("width", [60, 80])
def test_runs_table_keeps_ids_and_names_whole(width: int) -> None:
    started = datetime(2026, 12, 4, 17, 0, tzinfo=UTC)
    info = RunInfo(
        id=123456,
        status="interrupted",
        started_utc=started,
        ended_utc=None,
        heartbeat_utc=started,
        duration_s=7200.0,
        bench_name="emulated-drift-with-a-long-name",
        bench_sha256="0" * 64,
        scenario_name="iec-flow-5mlh",
        scenario_sha256="0" * 64,
        software_version="0.1.0",
        clock_kind="virtual",
        hostname="bench",
        pid=1,
        channel_count=12,
        sample_count=1234567,
    )
    console = Console(width=width, record=True, color_system=None)
    with console.capture() as captured:
        runs_command._print_table([info], "sqlite:////tmp/x.db", console)
    text = captured.get()
    assert "123456" in text, text
    assert "interrupted" in text
    if width >= 80:
        assert "iec-flow-5mlh" in text
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width


def test_list_params_piped_prints_every_accepted_name_whole() -> None:
    # CliRunner's output is not a terminal: what `medtwin simulate --list-params | less` sees.
    for pump in ("syringe", "volumetric"):
        result = CliRunner().invoke(main, ["simulate", "--pump", pump, "--list-params"])
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert lines[0].split("\t") == ["name", "unit", "default", "description"]
        listed = [line.split("\t")[0] for line in lines[1:]]
        expected = [info.name for info in list_parameters(SystemParams.nominal(pump))]
        assert listed == expected
        assert all(len(line.split("\t")) == 4 for line in lines)
        assert "…" not in result.output


def test_list_params_on_a_narrow_terminal_keeps_the_names(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from medtwin.hil.commands import simulate

    params = SystemParams.nominal("syringe")
    monkeypatch.setattr(
        "rich.console.Console.is_terminal", property(lambda self: True), raising=True
    )
    monkeypatch.setenv("COLUMNS", "60")
    simulate._list(params, as_json=False)
    text = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)  # a terminal gets colours
    for info in list_parameters(params):
        assert info.name in text
    assert max(len(line) for line in text.splitlines()) <= 60


def test_limits_are_written_one_way() -> None:
    assert format_limits(-2, 2, "%") == "−2 … 2 %"
    assert format_limits(None, 1500, "s") == "≤ 1500 s"
    assert format_limits(0.5, None, "mL") == "≥ 0.5 mL"
    assert format_limits(None, None, "%") == "no limits"


def test_the_table_the_report_and_the_pytest_summary_write_limits_alike() -> None:
    from medtwin.fixtures.results import limits_text, verdict_line
    from medtwin.hil.report.sections.verdicts import _limits_text

    verdict = Measurement("mean_flow_error_a", "%").in_range(-2, 2).measure(-2.5)
    assert verdict.outcome is Outcome.FAIL
    expected = "−2 … 2 %"
    assert limits_text(verdict) == expected
    assert expected in verdict_line(verdict)
    assert expected in render(verdict_table([verdict]), 120)
    record = VerdictRecord(
        measurement="mean_flow_error_a",
        source="real",
        value=-2.5,
        units="%",
        lower=-2.0,
        upper=2.0,
        marginal_lower=-1.8,
        marginal_upper=1.8,
        outcome=Outcome.FAIL,
    )
    assert _limits_text(record) == f"{expected}; marginal outside −1.8 … 1.8 %"


def test_see_more_hint_quotes_the_db_url_and_stays_on_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import inspect

    from medtwin.hil import session

    db = f"sqlite:///{tmp_path}/my runs/medtwin store.db"
    hint = session.see_more_hint(7, db)
    assert f"medtwin report 7 --db {shlex.quote(db)}" in hint
    assert f"medtwin runs --db {shlex.quote(db)}" in hint
    # The quoted command splits back into the words a user meant.
    words = shlex.split(hint.split("·")[0].removeprefix("see more:"))
    assert words == ["medtwin", "report", "7", "--db", db]
    # Printed as print_result prints it, on a 60-column terminal: still one line.
    monkeypatch.setenv("COLUMNS", "60")
    assert "see_more_hint(result.run_id, result.db)" in inspect.getsource(session.print_result)
    Console().print(hint, markup=False, highlight=False, soft_wrap=True)
    out = capsys.readouterr().out
    assert out == hint + "\n"


def test_see_more_hint_leaves_out_the_default_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medtwin.hil import session

    monkeypatch.chdir(tmp_path)
    absolute = f"sqlite:///{(tmp_path / 'medtwin.db').resolve()}"
    assert "--db" not in session.see_more_hint(3, absolute)
    assert "--db" not in session.see_more_hint(3, "sqlite:///medtwin.db")


def test_every_cli_table_column_folds_instead_of_cutting() -> None:
    """rich cuts a cell that does not fit with "…" unless the column says otherwise: every
    column of every table the CLI prints folds (a narrow terminal or an 80-column CI log
    then shows the whole detector, channel or parameter name over two lines)."""
    package = Path(__file__).resolve().parents[2] / "hil"
    cutting = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "add_column"
            ):
                overflow = {k.arg: k.value for k in node.keywords}.get("overflow")
                if not (isinstance(overflow, ast.Constant) and overflow.value == "fold"):
                    cutting.append(f"{path.relative_to(package.parent)}:{node.lineno}")
    assert not cutting, f"table columns that cut with an ellipsis: {cutting}"
