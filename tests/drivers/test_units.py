import pytest
from medtwin.drivers.units import format_duration, parse_duration_s


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30min", 1800), ("2h", 7200), ("1h30m", 5400), ("1.5h", 5400), ("12", 12)],
)
def test_durations_users_type(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "5 parsecs", "-3s", "h", "nan", "inf"])
def test_malformed_durations_name_the_text(text: str) -> None:
    with pytest.raises(ValueError, match="malformed duration"):
        parse_duration_s(text)


def test_format_round_trips() -> None:
    for seconds in (0.5, 59, 60, 3600, 5400, 7322):
        assert parse_duration_s(format_duration(seconds)) == seconds
