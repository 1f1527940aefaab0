"""Bench and scenario errors: every error of a file in one message, each naming file:field,
and "did you mean" for a misspelt key (issue 18 §4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from medtwin.drivers.errors import ConfigurationError
from medtwin.hil.config import load_bench, load_scenario
from medtwin.hil.procedures import parse_procedures

SCENARIO = """\
name = "x"
duration = "10min"
sampling = { pump1 = "1s" }
tolerance = {}

[[procedures]]
kind = "iec60601-2-24.flow"
rate_mlh = 5
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_all_errors_of_a_scenario_come_in_one_message(tmp_path: Path) -> None:
    path = write(tmp_path, "s.toml", SCENARIO)
    with pytest.raises(ConfigurationError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert "2 errors" in message
    assert f"{path}:tolerance: unknown field; did you mean 'tolerances'?" in message
    assert f"{path}:procedures[0].rate_mlh: unknown field; did you mean 'rate_ml_h'?" in message


def test_a_misspelt_procedure_field_is_not_reported_as_the_right_one_missing() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_procedures([{"kind": "iec60601-2-24.flow", "rate_mlh": 5}], source="s.toml")
    message = str(caught.value)
    assert "procedures[0].rate_mlh" in message
    assert "did you mean 'rate_ml_h'" in message
    assert "rate_ml_h: required field is missing" not in message


def test_one_error_reads_as_before(tmp_path: Path) -> None:
    path = write(tmp_path, "s.toml", 'name = "x"\nduration = "10min"\n')
    with pytest.raises(ConfigurationError) as caught:
        load_scenario(path)
    assert str(caught.value) == f"{path}:sampling: required field is missing"
    assert caught.value.field == "sampling"


def test_every_bench_error_names_its_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "b.toml",
        'name = "b"\n'
        "[[devices]]\n"
        'name = "pump"\nkind = "pump"\nprotocl = "ne1000"\nport = "emulated"\n'
        "[[devices]]\n"
        'name = "balance"\nkind = "balance"\nprotocol = "mtsics"\nprot = "emulated"\n',
    )
    with pytest.raises(ConfigurationError) as caught:
        load_bench(path)
    message = str(caught.value)
    assert "errors:" in message
    assert f"{path}:devices[0].protocl: unknown field; did you mean 'protocol'?" in message
    assert f"{path}:devices[1].prot: unknown field; did you mean 'port'?" in message
    assert "devices[0].protocol: required field is missing" not in message


def test_an_unknown_key_without_a_close_match_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, "s.toml", SCENARIO.replace("tolerance = {}", "zzz = 1"))
    with pytest.raises(ConfigurationError) as caught:
        load_scenario(path)
    assert f"{path}:zzz: unknown field (check the spelling" in str(caught.value)
