"""ProSim 8 codec: golden bytes, refusals before sending, ERR codes, round trips, fuzzing.

Golden command lines follow the argument formatting of OpenICE's ProSim 8 client
(``mdpnp/mdpnp`` ``FlukeProSim8.java``): ``NAME=arg,arg`` + CR LF, integers zero-padded to
three digits, the static IBP pressure always signed, the IBP channel one digit, the key
code two digits, ``SETRTC=hh,mm,ss,MM,DD,YYYY``.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st
from medtwin.drivers.errors import (
    CommandRefused,
    ConfigurationError,
    LimitError,
    ProtocolError,
)
from medtwin.drivers.prosim8 import (
    BAUD_RATE,
    COMMANDS,
    ERROR_MEANING,
    IBP_WAVEFORMS,
    KEY_CODES,
    LINE_END,
    MAX_LINE,
    VALIDATION_PASSWORD,
    Command,
    CommandError,
    DataReply,
    ErrorCode,
    ErrorReply,
    OkReply,
    Param,
    ProSim8Framer,
    Reply,
    RtcDateReply,
    RtcTimeReply,
    encode_command,
    encode_reply,
    encode_rtc_reply,
    parse_command,
    parse_reply,
    rtc_datetime,
)

# --------------------------------------------------------------------------- golden bytes

GOLDEN_COMMANDS: list[tuple[str, tuple[int | str, ...], bytes]] = [
    ("REMOTE", (), b"REMOTE\r\n"),
    ("LOCAL", (), b"LOCAL\r\n"),
    ("IDENT", (), b"IDENT\r\n"),
    ("GETRTC", (), b"GETRTC\r\n"),
    ("SETRTC", (9, 5, 3, 7, 4, 2026), b"SETRTC=09,05,03,07,04,2026\r\n"),
    ("SETRTC", (23, 59, 59, 12, 31, 2099), b"SETRTC=23,59,59,12,31,2099\r\n"),
    ("VALIDATION", ("OZYMANDIAS",), b"VALIDATION=OZYMANDIAS\r\n"),
    ("VALOFF", (), b"VALOFF\r\n"),
    ("NSRA", (80,), b"NSRA=080\r\n"),
    ("NSRA", (10,), b"NSRA=010\r\n"),
    ("NSRA", (360,), b"NSRA=360\r\n"),
    ("SAT", (97,), b"SAT=097\r\n"),
    ("SAT", (0,), b"SAT=000\r\n"),
    ("SAT", (100,), b"SAT=100\r\n"),
    ("RESPRATE", (15,), b"RESPRATE=015\r\n"),
    ("RESPRATE", (150,), b"RESPRATE=150\r\n"),
    ("NIBPP", (120, 80), b"NIBPP=120,080\r\n"),
    ("NIBPP", (400, 0), b"NIBPP=400,000\r\n"),
    ("IBPS", (1, 80), b"IBPS=1,+080\r\n"),
    ("IBPS", (2, -10), b"IBPS=2,-010\r\n"),
    ("IBPS", (1, 0), b"IBPS=1,+000\r\n"),
    ("IBPS", (2, 300), b"IBPS=2,+300\r\n"),
    ("IBPP", (1, 120, 80), b"IBPP=1,120,080\r\n"),
    ("IBPP", (2, 25, 8), b"IBPP=2,025,008\r\n"),
    ("IBPW", (1, "ART"), b"IBPW=1,ART\r\n"),
    ("IBPW", (2, "PAW"), b"IBPW=2,PAW\r\n"),
    ("KEY", (14, 100), b"KEY=14,100\r\n"),
    ("KEY", (1, 1), b"KEY=01,1\r\n"),
]


@pytest.mark.parametrize(("name", "args", "wire"), GOLDEN_COMMANDS)
def test_command_golden_bytes(name: str, args: tuple[int | str, ...], wire: bytes) -> None:
    assert encode_command(name, *args) == wire
    assert Command(name, args).encode() == wire
    assert parse_command(wire) == Command(name, args)


def test_golden_table_covers_every_command_and_waveform() -> None:
    assert {name for name, _, _ in GOLDEN_COMMANDS} == set(COMMANDS)
    for waveform in IBP_WAVEFORMS:
        wire = f"IBPW=1,{waveform}\r\n".encode()
        assert encode_command("IBPW", 1, waveform) == wire
        assert parse_command(wire).arg("waveform") == waveform


def test_table_facts() -> None:
    assert LINE_END == b"\r\n"
    assert BAUD_RATE == 115200
    assert VALIDATION_PASSWORD == "OZYMANDIAS"
    assert set(IBP_WAVEFORMS) == {"ART", "RART", "LV", "LA", "RV", "PA", "PAW", "RA"}
    assert KEY_CODES["SPO2"] == 14
    assert KEY_CODES["BACKLIGHT"] == 17
    assert sorted(KEY_CODES.values()) == list(range(1, 18))
    ranges = {
        (name, p.name): (p.low, p.high)
        for name, spec in COMMANDS.items()
        for p in spec.params
        if p.kind in ("uint", "sint")
    }
    assert ranges[("NSRA", "rate_bpm")] == (10, 360)
    assert ranges[("SAT", "spo2_pct")] == (0, 100)
    assert ranges[("RESPRATE", "rate_brpm")] == (10, 150)
    assert ranges[("NIBPP", "systolic_mmhg")] == (0, 400)
    assert ranges[("IBPS", "pressure_mmhg")] == (-10, 300)
    assert ranges[("IBPP", "diastolic_mmhg")] == (0, 300)
    assert ranges[("IBPW", "channel")] == (1, 2)
    assert COMMANDS["IDENT"].reply == "ident"
    assert COMMANDS["GETRTC"].reply == "rtc"


def test_command_arg_by_name() -> None:
    command = parse_command(b"IBPP=2,120,080\r\n")
    assert command.arg("channel") == 2
    assert command.arg("systolic_mmhg") == 120
    assert command.arg("diastolic_mmhg") == 80
    with pytest.raises(KeyError):
        command.arg("mean_mmhg")


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("NSRA", (9,)),
        ("NSRA", (361,)),
        ("SAT", (-1,)),
        ("SAT", (101,)),
        ("RESPRATE", (9,)),
        ("RESPRATE", (151,)),
        ("NIBPP", (401, 80)),
        ("NIBPP", (120, -1)),
        ("IBPS", (1, -11)),
        ("IBPS", (1, 301)),
        ("IBPS", (3, 80)),
        ("IBPS", (0, 80)),
        ("IBPP", (1, 301, 80)),
        ("IBPW", (1, "AORTA")),
        ("IBPW", (1, "art")),
        ("KEY", (0, 1)),
        ("KEY", (18, 1)),
        ("KEY", (14, 0)),
        ("SETRTC", (24, 0, 0, 1, 1, 2026)),
        ("SETRTC", (0, 60, 0, 1, 1, 2026)),
        ("SETRTC", (0, 0, 0, 13, 1, 2026)),
        ("SETRTC", (0, 0, 0, 2, 30, 2026)),  # not a calendar date
        ("SETRTC", (0, 0, 0, 2, 29, 2027)),  # not a leap year
        ("VALIDATION", ("OZY MANDIAS",)),
        ("VALIDATION", ("A,B",)),
        ("VALIDATION", ("",)),
    ],
)
def test_out_of_range_is_refused_before_sending(name: str, args: tuple[int | str, ...]) -> None:
    with pytest.raises(LimitError) as caught:
        encode_command(name, *args, device="sim")
    assert isinstance(caught.value, CommandRefused)
    assert caught.value.device == "sim"
    assert "refused" in str(caught.value) or "calendar" in str(caught.value)


def test_leap_day_is_accepted() -> None:
    assert encode_command("SETRTC", 0, 0, 0, 2, 29, 2028) == b"SETRTC=00,00,00,02,29,2028\r\n"


def test_password_never_appears_in_a_refusal() -> None:
    with pytest.raises(LimitError) as caught:
        encode_command("VALIDATION", "SECRET WORD")
    assert "SECRET" not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("NSRB", (80,)),
        ("nsra", (80,)),
        ("NSRA", ()),
        ("NSRA", (80, 90)),
        ("REMOTE", (1,)),
        ("NSRA", ("80",)),
        ("NSRA", (80.0,)),
        ("NSRA", (True,)),
        ("IBPW", (1, 2)),
        ("VALIDATION", (1,)),
    ],
)
def test_malformed_call_is_a_configuration_error(name: str, args: tuple[object, ...]) -> None:
    with pytest.raises(ConfigurationError):
        encode_command(name, *args)  # type: ignore[arg-type]


def test_declared_limits_narrow_the_range() -> None:
    limits = {"NSRA.rate_bpm": (30.0, 200.0), "IBPS.pressure_mmhg": (0.0, 250.0)}
    assert encode_command("NSRA", 30, limits=limits) == b"NSRA=030\r\n"
    assert encode_command("NSRA", 200, limits=limits) == b"NSRA=200\r\n"
    for rate in (29, 201):
        with pytest.raises(LimitError, match=r"declared limits 30\.0\.\.200\.0 bpm"):
            encode_command("NSRA", rate, limits=limits, device="sim")
    with pytest.raises(LimitError):
        encode_command("IBPS", 1, -5, limits=limits)
    # A limit for another command does not touch this one.
    assert encode_command("SAT", 50, limits=limits) == b"SAT=050\r\n"
    with pytest.raises(ConfigurationError, match="no argument 'rate'"):
        encode_command("NSRA", 80, limits={"NSRA.rate": (30, 200)})


# --------------------------------------------------------------------------- ERR mapping


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (b"FOO\r\n", ErrorCode.UNKNOWN_COMMAND),
        (b"nsra=080\r\n", ErrorCode.UNKNOWN_COMMAND),
        (b"NSRA =080\r\n", ErrorCode.UNKNOWN_COMMAND),
        (b"=080\r\n", ErrorCode.UNKNOWN_COMMAND),
        (b"REMOTE=1\r\n", ErrorCode.ILLEGAL_COMMAND),
        (b"REMOTE=\r\n", ErrorCode.ILLEGAL_COMMAND),
        (b"NSRA\r\n", ErrorCode.ILLEGAL_COMMAND),
        (b"NIBPP=120\r\n", ErrorCode.ILLEGAL_COMMAND),
        (b"NIBPP=120,080,090\r\n", ErrorCode.ILLEGAL_COMMAND),
        (b"NSRA=\r\n", ErrorCode.ILLEGAL_PARAMETER),
        (b"NSRA=361\r\n", ErrorCode.ILLEGAL_PARAMETER),
        (b"NSRA=009\r\n", ErrorCode.ILLEGAL_PARAMETER),
        (b"NSRA=0080\r\n", ErrorCode.ILLEGAL_PARAMETER),
        (b"NSRA=+080\r\n", ErrorCode.ILLEGAL_PARAMETER),
        (b"NSRA=8O\r\n", ErrorCode.ILLEGAL_PARAMETER),
        (b"SAT=1e2\r\n", ErrorCode.ILLEGAL_PARAMETER),
        (b"IBPS=3,+080\r\n", ErrorCode.ILLEGAL_PARAMETER),
        (b"IBPS=1,-011\r\n", ErrorCode.ILLEGAL_PARAMETER),
        (b"IBPS=1,--10\r\n", ErrorCode.ILLEGAL_PARAMETER),
        (b"IBPW=1,AORTA\r\n", ErrorCode.ILLEGAL_PARAMETER),
        (b"SETRTC=00,00,00,02,30,2026\r\n", ErrorCode.ILLEGAL_PARAMETER),
        (b"VALIDATION=A B\r\n", ErrorCode.ILLEGAL_PARAMETER),
        (b"NSRA=080\x00\r\n", ErrorCode.DATA_CORRUPTED),
        (b"NSRA=08\xb0\r\n", ErrorCode.DATA_CORRUPTED),
        (b"NSRA=080\tX\r\n", ErrorCode.DATA_CORRUPTED),
        (b"A" * (MAX_LINE + 1), ErrorCode.DATA_CORRUPTED),
    ],
)
def test_parse_command_error_codes(wire: bytes, code: ErrorCode) -> None:
    with pytest.raises(CommandError) as caught:
        parse_command(wire, device="sim")
    assert caught.value.code is code
    assert isinstance(caught.value, ProtocolError)
    assert caught.value.raw == wire
    assert f"ERR={int(code):02d}" in str(caught.value)
    # The simulator's answer to it:
    assert ErrorReply(caught.value.code).encode() == f"ERR={int(code):02d}\r\n".encode()


@pytest.mark.parametrize(
    ("wire", "command"),
    [
        (b"NSRA=80", Command("NSRA", (80,))),  # unpadded, no line end
        (b"NSRA=080\n", Command("NSRA", (80,))),  # LF only
        (b"NSRA=080\r", Command("NSRA", (80,))),  # CR only
        (b"IBPS=1,80\r\n", Command("IBPS", (1, 80))),  # sign left out
        (b"IBPS=1,-10\r\n", Command("IBPS", (1, -10))),
        (b"SAT=5\r\n", Command("SAT", (5,))),
        (b"KEY=14,100\r\n", Command("KEY", (14, 100))),
        (b"VALIDATION=WRONG\r\n", Command("VALIDATION", ("WRONG",))),  # ERR=07 is the
        # simulator's decision, not the parser's
    ],
)
def test_parse_command_is_lenient_where_clients_differ(wire: bytes, command: Command) -> None:
    assert parse_command(wire) == command


def test_error_table() -> None:
    assert [int(code) for code in ErrorCode] == list(range(8))
    assert set(ERROR_MEANING) == set(ErrorCode)
    assert ErrorReply(0).meaning.startswith("no commands allowed")
    assert ErrorReply(7).meaning == "wrong password"
    assert ErrorReply(42).meaning == "undocumented error code"
    with pytest.raises(ValueError, match=r"0\.\.99"):
        ErrorReply(100)


# --------------------------------------------------------------------------- replies


GOLDEN_REPLIES: list[tuple[bytes, Reply]] = [
    (b"OK\r\n", OkReply()),
    (b"ERR=00\r\n", ErrorReply(0)),
    (b"ERR=03\r\n", ErrorReply(ErrorCode.ILLEGAL_PARAMETER)),
    (b"ERR=07\r\n", ErrorReply(7)),
    (b"13:05:09\r\n", RtcTimeReply(13, 5, 9)),
    (b"07/04/2026\r\n", RtcDateReply(7, 4, 2026)),
    (b"ProSim8,2.00.04,1234567\r\n", DataReply("ProSim8,2.00.04,1234567")),
]


@pytest.mark.parametrize(("wire", "reply"), GOLDEN_REPLIES)
def test_reply_golden_bytes(wire: bytes, reply: Reply) -> None:
    assert encode_reply(reply) == wire
    assert parse_reply(wire) == reply
    assert parse_reply(wire.rstrip(b"\r\n")) == reply


def test_ident_fields() -> None:
    reply = parse_reply(b"ProSim8,2.00.04,1234567\r\n", command="IDENT")
    assert isinstance(reply, DataReply)
    assert reply.model == "ProSim8"
    assert reply.fields == ("ProSim8", "2.00.04", "1234567")
    # Even text that looks like a clock is the identity when IDENT asked.
    assert parse_reply(b"12:00:00", command="IDENT") == DataReply("12:00:00")


def test_replies_checked_against_the_command() -> None:
    assert parse_reply(b"OK\r\n", command="NSRA") == OkReply()
    assert parse_reply(b"ERR=01\r\n", command="IDENT") == ErrorReply(1)
    assert parse_reply(b"10:11:12\r\n", command="GETRTC") == RtcTimeReply(10, 11, 12)
    for wire, command in [
        (b"ProSim8,1\r\n", "NSRA"),
        (b"10:11:12\r\n", "REMOTE"),
        (b"ProSim8\r\n", "GETRTC"),
        (b"ok\r\n", "SAT"),
        (b"ERR=3\r\n", "SAT"),
        (b"ERR=003\r\n", "SAT"),
        (b"OK \r\n", "SAT"),
    ]:
        with pytest.raises(ProtocolError):
            parse_reply(wire, command=command)
    with pytest.raises(ValueError, match="unknown ProSim 8 command"):
        parse_reply(b"OK", command="FOO")


@pytest.mark.parametrize(
    "wire", [b"", b"\r\n", b"OK\x00\r\n", b"\xff\r\n", b"25:00:00", b"02/30/2026"]
)
def test_bad_replies(wire: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_reply(wire)


def test_getrtc_two_lines() -> None:
    moment = dt.datetime(2026, 7, 4, 9, 5, 3)
    wire = encode_rtc_reply(moment)
    assert wire == b"09:05:03\r\n07/04/2026\r\n"
    lines = ProSim8Framer().feed(wire)
    time, date = (parse_reply(line, command="GETRTC") for line in lines)
    assert isinstance(time, RtcTimeReply)
    assert isinstance(date, RtcDateReply)
    assert rtc_datetime(time, date) == moment
    with pytest.raises(ProtocolError, match="expected a time line, then a date line"):
        rtc_datetime(date, time)
    with pytest.raises(ProtocolError) as caught:
        rtc_datetime(time, ErrorReply(5), device="sim")
    assert caught.value.raw == b"09:05:03\r\nERR=05\r\n"


def test_reply_constructors_validate() -> None:
    with pytest.raises(ValueError, match="hour"):
        RtcTimeReply(24, 0, 0)
    with pytest.raises(ValueError, match="day"):
        RtcDateReply(2, 30, 2026)
    with pytest.raises(ValueError, match="printable"):
        DataReply("")
    with pytest.raises(ValueError, match="printable"):
        DataReply("a\r\nb")


# --------------------------------------------------------------------------- framer


def test_framer_terminators_and_chunking() -> None:
    framer = ProSim8Framer()
    assert framer.feed(b"NS") == []
    assert framer.pending == 2
    assert framer.feed(b"RA=080\r") == [b"NSRA=080"]
    # The LF of that CR LF arrives in the next chunk: no empty line.
    assert framer.feed(b"\nSAT=097\nREMOTE\r\n\r\n") == [b"SAT=097", b"REMOTE"]
    assert framer.pending == 0
    framer.feed(b"LOC")
    framer.reset()
    assert framer.pending == 0
    assert framer.feed(b"AL\r\n") == [b"AL"]


def test_framer_overlong_line_then_good_line() -> None:
    framer = ProSim8Framer(max_length=16)
    lines = framer.feed(b"X" * 100 + b"\r\nNSRA=080\r\n")
    assert lines == [b"X" * 17, b"NSRA=080"]
    with pytest.raises(CommandError) as caught:
        parse_command(lines[0].ljust(MAX_LINE + 1, b"X"))
    assert caught.value.code is ErrorCode.DATA_CORRUPTED
    with pytest.raises(ValueError, match="at least 1"):
        ProSim8Framer(max_length=0)


def test_framer_break_checksum_garbles_a_reply() -> None:
    garbled = ProSim8Framer().break_checksum(b"SAT=097")
    assert garbled != b"SAT=097"
    with pytest.raises(CommandError):
        parse_command(garbled)


# --------------------------------------------------------------------------- hypothesis


def _value(param: Param) -> st.SearchStrategy[int | str]:
    if param.kind == "choice":
        return st.sampled_from(param.choices)
    if param.kind == "text":
        return st.from_regex(r"[A-Z0-9]{1,16}", fullmatch=True)
    return st.integers(param.low, param.high)


@st.composite
def _commands(draw: st.DrawFn) -> Command:
    name = draw(st.sampled_from(sorted(COMMANDS)))
    args = tuple(draw(_value(p)) for p in COMMANDS[name].params)
    if name == "SETRTC":
        day = draw(st.dates(dt.date(2000, 1, 1), dt.date(2099, 12, 31)))
        args = (*args[:3], day.month, day.day, day.year)
    return Command(name, args)


@given(_commands())
def test_command_round_trip(command: Command) -> None:
    wire = command.encode()
    assert wire.endswith(LINE_END)
    assert wire.count(b"\r") == 1
    assert wire.isascii()
    assert parse_command(wire) == command


@given(st.sampled_from(sorted(COMMANDS)), st.data())
def test_every_integer_outside_the_range_is_refused(name: str, data: st.DataObject) -> None:
    spec = COMMANDS[name]
    numeric = [i for i, p in enumerate(spec.params) if p.kind in ("uint", "sint")]
    if not numeric:
        return
    index = data.draw(st.sampled_from(numeric))
    param = spec.params[index]
    bad = data.draw(st.integers(max_value=param.low - 1) | st.integers(min_value=param.high + 1))
    good = list(data.draw(_commands().filter(lambda c: c.name == name)).args)
    good[index] = bad
    with pytest.raises(LimitError):
        encode_command(name, *good)


_reply_strategy: st.SearchStrategy[Reply] = st.one_of(
    st.just(OkReply()),
    st.builds(ErrorReply, st.integers(0, 99)),
    st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2099, 12, 31)).map(
        lambda m: RtcTimeReply(m.hour, m.minute, m.second)
    ),
    st.dates(dt.date(2000, 1, 1), dt.date(2099, 12, 31)).map(
        lambda d: RtcDateReply(d.month, d.day, d.year)
    ),
    st.from_regex(r"[A-Za-z][ -~]{0,30}", fullmatch=True)
    .filter(lambda t: t != "OK" and not t.startswith("ERR="))
    .map(DataReply),
)


@given(_reply_strategy)
def test_reply_round_trip(reply: Reply) -> None:
    assert parse_reply(reply.encode()) == reply


@given(st.binary(max_size=80))
def test_parse_command_fuzz_raises_only_protocol_error(data: bytes) -> None:
    try:
        command = parse_command(data)
    except CommandError as error:
        code: ErrorCode | None = error.code
    else:
        code = None
        assert parse_command(command.encode()) == command
    assert code is None or code in set(ErrorCode)


@given(st.binary(max_size=80), st.sampled_from([None, *sorted(COMMANDS)]))
def test_parse_reply_fuzz_raises_only_protocol_error(data: bytes, command: str | None) -> None:
    try:
        reply = parse_reply(data, command=command)
    except ProtocolError:
        return
    assert parse_reply(reply.encode(), command=command) == reply


@given(st.lists(_commands(), max_size=6), st.binary(max_size=40), st.data())
def test_framer_garbage_never_swallows_the_next_line(
    commands: list[Command], garbage: bytes, data: st.DataObject
) -> None:
    wire = garbage + b"\r\n" + b"".join(c.encode() for c in commands)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=5)))
    framer = ProSim8Framer()
    lines: list[bytes] = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        lines += framer.feed(wire[start:end])
    tail = lines[len(lines) - len(commands) :] if commands else []
    assert [parse_command(line) for line in tail] == commands
    assert framer.pending == 0
