"""Every example in README.md and docs/ runs: the documentation cannot rot.

The pages are parsed with Sybil (a maintained documentation-testing library) using one
custom parser, :func:`parse_page`, that finds every fenced code block of the page and the
``<!-- medtwin: ... -->`` directive written right above it. Each block is one test, named
``<page>:<line>``; the blocks of a page run in order, share one Python namespace and one
temporary working directory (holding a copy of ``examples/``), so a page reads as a user
would follow it: ``medtwin demo`` first, then ``medtwin calibrate 1`` on the run it stored.

What a block does, by its language:

``toml``
    Parsed with :mod:`tomllib`. A bench file (top-level ``devices``, or the ``bench``
    directive) is validated by medtwin's own loader and bench checks; a scenario file
    (top-level ``duration``, or ``scenario``) by the scenario loader and then planned
    against a bench (the packaged ``emulated-nominal`` unless ``bench=PATH``); a Modbus
    register map (``[map]`` and ``[registers.*]``, or ``register-map``) by its loader. A fragment
    (``bench-part`` / ``scenario-part``, optionally ``device=NAME``) is merged into the
    packaged bench or scenario and validated as part of it.
``python``
    Executed (top-level ``await`` allowed: the block then runs in :func:`asyncio.run`).
    A block written for a device on ``/dev/ttyUSB0`` runs against that protocol's
    emulator on a pty with ``emulate="PROTOCOL [option=value ...]"``.
``sh``, ``console``, ``shell`` and unlabelled blocks
    Every ``medtwin ...`` command (the lines after ``$ `` when the block shows a prompt,
    else every line; ``\\`` continues a line, ``#`` starts a comment) runs in a
    subprocess in the page's directory, against emulated devices on the virtual clock,
    and must exit 0. ``medtwin emulate`` serves until interrupted: it is stopped with
    SIGINT once it printed its ports. Other commands (pip, tox, ls) are not run, and
    ``pytest`` commands only with the ``pytest`` or ``collect-only`` directive.

Directives (``<!-- medtwin: WORD key=value ... -->``, shell-quoted values):

``skip="reason"``            the block is reported as skipped with that reason
``bench``, ``scenario``, ``register-map``   the TOML block is a whole file of that kind
``bench-part``, ``scenario-part`` [``device=NAME``]   a fragment, validated in a whole file
``parse-only="reason"``      a TOML block that is only parsed (it names a plug-in's protocol)
``emulate="PROTOCOL ..."``   a Python block's ``/dev/ttyUSB0`` is an emulator's pty
``bench=PATH``               the bench a scenario block is planned against
``file=PATH``                also write the block into the page's directory (a bench file
                             a later command names, a test module ``pytest`` then runs)
``setup="CMD; CMD"``         medtwin commands run first (once per page): e.g. a run to report
``exit="N ..."``             the expected exit status of each command (default 0)
``pytest``                   run the block's ``pytest`` commands too
``no-warnings``              and fail if pytest prints a warning (none is shown on the page)
``collect-only`` [``selects="a b"``]  run its ``pytest`` commands with ``--collect-only`` and
                             check that exactly the named tests are selected
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from medtwin.hil.config import bench_from_text, scenario_from_text
from medtwin.hil.packaged import bench_path, scenario_path
from medtwin.hil.plan import RunPlan
from medtwin.hil.rig import check_bench
from medtwin.hil.twin import twin_params
from sybil import Document, Example, Lexeme, Region

ROOT = Path(__file__).resolve().parents[1]
#: Every page, found by glob so that a new page is covered the day it is added.
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])

SHELL_LANGUAGES = {"", "sh", "shell", "bash", "console"}
#: Seconds a single documented command may take (the 2-hour demo takes a few).
COMMAND_TIMEOUT_S = 300.0

_FENCE = re.compile(
    r"(?:^<!--\s*medtwin:(?P<directive>.*?)-->[ \t]*\n(?:[ \t]*\n)*)?"
    r"^(?P<fence>```+)(?P<language>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=fence)[ \t]*$",
    re.MULTILINE | re.DOTALL,
)


@dataclass
class Block:
    """One fenced block of a page and what its directive asks."""

    language: str
    text: str
    options: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        if "skip" in self.options:
            return "skip"
        if self.language in SHELL_LANGUAGES:
            return "shell"
        return self.language


def _directive(text: str | None) -> dict[str, str]:
    options: dict[str, str] = {}
    for word in shlex.split(text or ""):
        key, _, value = word.partition("=")
        options[key] = value
    return options


def parse_page(document: Document) -> Iterator[Region]:
    """The Sybil parser: one region per fenced block, its evaluator chosen by its kind."""
    for match in _FENCE.finditer(document.text):
        block = Block(match["language"].lower(), match["body"], _directive(match["directive"]))
        start = match.start("fence")
        line_offset = document.text.count("\n", 0, match.start("body")) - document.text.count(
            "\n", 0, start
        )
        lexeme = Lexeme(block.text, match.start("body"), line_offset)
        yield Region(start, match.end(), parsed=(block, lexeme), evaluator=evaluate)


# ---------------------------------------------------------------------------------------
# One page's state: its namespace (Sybil's), working directory and progress.


@dataclass
class PageRun:
    document: Document
    examples: list[Example]
    workdir: Path
    done: int = 0
    setups: set[str] = field(default_factory=set)
    failed: str | None = None


_PAGE_RUNS: dict[Path, PageRun] = {}


def _page_run(page: Path, tmp_path_factory: pytest.TempPathFactory) -> PageRun:
    if page not in _PAGE_RUNS:
        document = Document.parse(str(page), parse_page)
        workdir = tmp_path_factory.mktemp(re.sub(r"\W", "-", page.stem))
        shutil.copytree(ROOT / "examples", workdir / "examples")
        _PAGE_RUNS[page] = PageRun(document, list(document), workdir)
        document.namespace["__page_run__"] = _PAGE_RUNS[page]
    return _PAGE_RUNS[page]


def evaluate(example: Example) -> str | None:
    block, _ = example.parsed
    page_run: PageRun = example.namespace["__page_run__"]
    handler = {"skip": _skip, "toml": _toml, "python": _python, "shell": _shell}.get(block.kind)
    if handler is None:  # json, text, ini... shown to be read, not run
        if "file" in block.options:
            _write(page_run, block)
            return None
        pytest.skip(f"a {block.language or 'plain'} block is not executable")
    setup = block.options.get("setup")
    if setup and setup not in page_run.setups:  # once per page, before the block
        for command in setup.split(";"):
            status, output = _run(_argv(command.strip()), page_run.workdir)
            if status != 0:
                return f"setup `{command.strip()}` exited {status}:\n{output[-4000:]}"
        page_run.setups.add(setup)
    cwd = Path.cwd()
    os.chdir(page_run.workdir)  # relative paths of a block are the page's directory
    try:
        return handler(example, block, page_run)
    finally:
        os.chdir(cwd)


def _skip(example: Example, block: Block, page_run: PageRun) -> None:
    pytest.skip(f"skipped by its directive: {block.options['skip']}")


def _write(page_run: PageRun, block: Block) -> None:
    target = page_run.workdir / block.options["file"]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(block.text, encoding="utf-8")


# ---------------------------------------------------------------------------------------
# TOML: parsed, and validated by medtwin's own loaders when it is a bench or scenario file.


def _merge(base: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in part.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _check_bench(text: str, source: str) -> Any:
    bench = bench_from_text(text, source=source)
    check_bench(bench)
    twin_params(bench)
    return bench


def _toml(example: Example, block: Block, page_run: PageRun) -> None:
    import tomli_w

    source = f"{Path(example.path).name}:{example.line}"
    try:
        data = tomllib.loads(block.text)
    except tomllib.TOMLDecodeError as error:
        return f"{source}: invalid TOML: {error}"  # type: ignore[return-value]
    options = block.options
    if "parse-only" in options:  # valid TOML; medtwin cannot load it here (reason given)
        pass
    elif "bench-part" in options or "scenario-part" in options:
        bench_file = bench_path("emulated-nominal")
        packaged = scenario_path("iec-flow-5mlh") if "scenario-part" in options else bench_file
        base = tomllib.loads(packaged.read_text(encoding="utf-8"))
        if "device" in options:
            devices = [
                _merge(d, data) if d["name"] == options["device"] else d for d in base["devices"]
            ]
            whole = {**base, "devices": devices}
        else:
            whole = _merge(base, data)
        text = tomli_w.dumps(whole)
        if "bench-part" in options:
            _check_bench(text, source)
        else:
            # the fragment is part of a scenario, planned against the packaged bench
            bench = _check_bench(bench_file.read_text(encoding="utf-8"), "bench")
            RunPlan.of(bench, scenario_from_text(text))
    elif "register-map" in options or {"map", "registers"} <= data.keys():
        from medtwin.drivers.register_map import RegisterMap

        RegisterMap.from_dict(data, source=source)
    elif "bench" in options or ("devices" in data and "scenario" not in options):
        _check_bench(block.text, source)
    elif "scenario" in options or {"name", "duration"} <= data.keys():
        scenario = scenario_from_text(block.text, source=source)
        bench_file = options.get("bench") or str(bench_path("emulated-nominal"))
        bench = _check_bench(
            (page_run.workdir / bench_file).read_text(encoding="utf-8"), bench_file
        )
        RunPlan.of(bench, scenario)
    if "file" in options:
        _write(page_run, block)
    return None


# ---------------------------------------------------------------------------------------
# Python: executed in the page's namespace and directory; top-level await allowed.


def _python(example: Example, block: Block, page_run: PageRun) -> None:
    if "file" in block.options:  # a module a later command runs (a test file for pytest)
        _write(page_run, block)
        return
    _, lexeme = example.parsed
    padding = "\n" * (example.line + lexeme.line_offset - 1)
    try:
        if "emulate" in block.options:
            asyncio.run(_with_emulator(example, block.options["emulate"], padding + block.text))
        else:
            result = eval(_compile(example, padding + block.text), example.namespace)
            if inspect.iscoroutine(result):
                asyncio.run(result)
    finally:
        example.namespace.pop("__builtins__", None)


def _compile(example: Example, source: str) -> Any:
    return compile(
        source, example.path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
    )


async def _with_emulator(example: Example, spec: str, source: str) -> None:
    """Run a block written for a device on ``/dev/ttyUSB0`` against that device's emulator
    on a pty (``emulate="PROTOCOL option=value ..."``), on the wall clock as a real device."""
    from medtwin.drivers.clock import WallClock
    from medtwin.drivers.emulators.physical_bench import PhysicalBench
    from medtwin.drivers.registry import descriptor, emulator_class

    protocol, *assignments = spec.split()
    options = {}
    for assignment in assignments:
        key, _, value = assignment.partition("=")
        options[key] = ast.literal_eval(value)
    clock = WallClock()
    bench = PhysicalBench.default(clock=clock)
    mechanism_name = descriptor(protocol).mechanism or ""
    if mechanism_name == "oximeter":
        # An oximeter watches the bench's patient through its vendor preset's monitor model.
        from medtwin.device_models.monitor.params import monitor_preset

        preset = "masimo" if protocol.startswith("masimo") else "nonin"
        mechanism = bench.patient.oximeter(
            monitor_preset(preset), model=preset, serial="0000012345", firmware="41"
        )
    else:
        mechanism = getattr(bench, mechanism_name)
    emulator = emulator_class(protocol)(mechanism, clock=clock, **options)
    port = await emulator.start()
    try:
        result = eval(
            _compile(example, source.replace("/dev/ttyUSB0", str(port))), example.namespace
        )
        if inspect.iscoroutine(result):
            await result
    finally:
        await emulator.stop()


# ---------------------------------------------------------------------------------------
# Shell: medtwin (and, when asked, pytest) commands in a subprocess in the page's directory.


def _commands(text: str) -> list[str]:
    lines = text.splitlines()
    prompted = any(line.startswith("$ ") for line in lines)
    commands: list[str] = []
    continuing = False
    for line in lines:
        if continuing:
            commands[-1] += " " + line.strip()
        elif prompted and line.startswith("$ "):
            commands.append(line[2:].strip())
        elif not prompted and line.strip():
            commands.append(line.strip())
        else:
            continue
        continuing = commands[-1].endswith("\\")
        commands[-1] = commands[-1].removesuffix("\\").strip()
    return commands


def _argv(command: str) -> list[str]:
    lexer = shlex.shlex(command, posix=True, punctuation_chars=False)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    # a plain, wide, colourless terminal: what a CI log sees
    env.update(COLUMNS="120", NO_COLOR="1", TERM="dumb", PYTHONUNBUFFERED="1")
    env.pop("FORCE_COLOR", None)
    return env


def _medtwin(argv: list[str]) -> list[str]:
    executable = shutil.which("medtwin")
    if executable is not None:
        return [executable, *argv[1:]]
    return [sys.executable, "-m", "medtwin.hil", *argv[1:]]


def _serve_and_interrupt(argv: list[str], cwd: Path) -> tuple[int, str]:
    """``medtwin emulate`` serves until Ctrl-C: wait for its ports, then send SIGINT."""
    process = subprocess.Popen(
        _medtwin(argv),
        cwd=cwd,
        env=_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    output = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            if "serving" in line or line.lstrip().startswith("{"):
                break
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
        output.append(rest)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
    return process.returncode, "".join(output)


def _run(argv: list[str], cwd: Path) -> tuple[int, str]:
    if argv[0] == "medtwin":
        if argv[1:2] == ["emulate"]:
            return _serve_and_interrupt(argv, cwd)
        full = _medtwin(argv)
    elif not _is_pytest(argv):  # a setup step such as mkdir
        full = argv
    else:  # pytest, as `pytest` or `python -m pytest`
        start = argv.index("pytest") + 1
        full = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *argv[start:]]
    done = subprocess.run(
        full,
        cwd=cwd,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def _is_pytest(argv: list[str]) -> bool:
    return bool(argv) and (
        argv[0] == "pytest" or (argv[0].startswith("python") and argv[1:3] == ["-m", "pytest"])
    )


def _selected_commands(block: Block) -> list[tuple[str, list[str]]]:
    """The commands of a shell block that the test runs, with their argv."""
    run_pytest = "pytest" in block.options or "collect-only" in block.options
    selected = []
    for command in _commands(block.text):
        words = command.split()
        if not words or words[0] not in ("medtwin", "pytest", "python", "python3"):
            continue  # pip, tox, ls, output, diagrams: shown, not run
        argv = _argv(command)
        if argv and argv[0] == "medtwin":
            selected.append((command, argv))
        elif _is_pytest(argv) and run_pytest:
            if "collect-only" in block.options:
                argv = [*argv, "--collect-only", "-q"]
            selected.append((command, argv))
    return selected


def _shell(example: Example, block: Block, page_run: PageRun) -> str | None:
    options = block.options
    selected = _selected_commands(block)
    if not selected:
        pytest.skip("no medtwin command in this block (only shown, e.g. pip, tox or output)")
    expected = [int(n) for n in options.get("exit", "").split()] or [0] * len(selected)
    if len(expected) != len(selected):
        return f"exit= gives {len(expected)} status(es) for {len(selected)} command(s)"
    for (command, argv), want in zip(selected, expected, strict=True):
        status, output = _run(argv, page_run.workdir)
        if status != want:
            return f"`{command}` exited {status}, expected {want}:\n{output[-4000:]}"
        if "no-warnings" in options and re.search(r"warnings summary|Warning:", output):
            return f"`{command}` printed warnings; the page shows none:\n{output[-4000:]}"
        if "selects" in options:
            names = {line.split("::")[-1] for line in output.splitlines() if "::" in line}
            want_names = set(options["selects"].split())
            if names != want_names:
                return f"`{command}` selects {sorted(names)}, the page says {sorted(want_names)}"
    return None


# ---------------------------------------------------------------------------------------
# The tests: one per block, in page order.


def _runs_something(block: Block) -> bool:
    if block.kind in ("skip", "toml", "python") or "file" in block.options:
        return True
    return block.kind == "shell" and bool(_selected_commands(block))


def _cases() -> list[Any]:
    cases = []
    for page in PAGES:
        document = Document.parse(str(page), parse_page)
        examples = list(document)
        runs_commands = any(
            "setup" in e.parsed[0].options
            or (e.parsed[0].kind == "shell" and _selected_commands(e.parsed[0]))
            for e in examples
        )
        for index, example in enumerate(examples):
            if not _runs_something(example.parsed[0]):
                continue  # output, a diagram, JSON: shown to be read
            # A page with commands needs its earlier blocks (a stored run, a written file),
            # and its commands take seconds: the whole page is `slow`.
            marks = [pytest.mark.slow] if runs_commands else []
            name = f"{page.relative_to(ROOT)}:{example.line}"
            cases.append(pytest.param(page, index, id=name, marks=marks))
    return cases


@pytest.mark.parametrize(("page", "index"), _cases())
def test_example(page: Path, index: int, tmp_path_factory: pytest.TempPathFactory) -> None:
    page_run = _page_run(page, tmp_path_factory)
    # Run the page's earlier blocks first when a selection (-k) left them out.
    while page_run.done < index:
        try:
            page_run.examples[page_run.done].evaluate()
        except pytest.skip.Exception:
            pass
        except Exception:  # the earlier block's own test reports it in full
            page_run.failed = f"line {page_run.examples[page_run.done].line}"
        page_run.done += 1
    page_run.done = index + 1
    try:
        page_run.examples[index].evaluate()
    except pytest.skip.Exception:
        raise
    except Exception as error:
        if page_run.failed:  # often the cause: a run or a file this block needs is missing
            error.add_note(f"an earlier block of this page failed first ({page_run.failed})")
        page_run.failed = f"line {page_run.examples[index].line}"
        raise


# ---------------------------------------------------------------------------------------
# The machinery itself, on small pages: what it must catch.


def _evaluate_page(path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    page_run = _page_run(path, tmp_path_factory)
    for example in page_run.examples:
        example.evaluate()


def test_an_inline_table_over_two_lines_is_caught(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    page = tmp_path / "page.md"
    page.write_text("```toml\nlimits = { min_rate_ml_h = 0.01,\n  max_rate_ml_h = 1500.0 }\n```\n")
    with pytest.raises(Exception, match="invalid TOML"):
        _evaluate_page(page, tmp_path_factory)


def test_emulated_only_keys_on_a_real_port_are_caught(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```toml\n"
        'name = "b"\n[[devices]]\nname = "pump"\nkind = "pump"\nprotocol = "ne1000"\n'
        'port = "/dev/ttyUSB0"\nfaults = ["drop:p=0.01"]\n'
        "```\n"
    )
    with pytest.raises(Exception, match="faults can only be injected into emulated devices"):
        _evaluate_page(page, tmp_path_factory)


def test_a_scenario_without_sampling_is_caught(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    page = tmp_path / "page.md"
    page.write_text('<!-- medtwin: scenario -->\n```toml\nname = "s"\nduration = "1h"\n```\n')
    with pytest.raises(Exception, match="sampling"):
        _evaluate_page(page, tmp_path_factory)


def test_python_blocks_share_a_namespace_and_undefined_names_fail(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    page = tmp_path / "page.md"
    page.write_text("```python\nx = 2\n```\n\n```python\nassert x == 2\nprint(y)\n```\n")
    with pytest.raises(NameError, match="'y'"):
        _evaluate_page(page, tmp_path_factory)


def test_commands_of_a_shell_block() -> None:
    block = Block(
        "",
        '$ medtwin run a.toml \\\n      b.toml -k "x y"   # comment\noutput line\n'
        "$ pip install medtwin\n$ pytest suite -m quick\n",
        {"collect-only": ""},
    )
    assert [argv for _, argv in _selected_commands(block)] == [
        ["medtwin", "run", "a.toml", "b.toml", "-k", "x y"],
        ["pytest", "suite", "-m", "quick", "--collect-only", "-q"],
    ]
    # without a prompt every line is a command; pytest runs only when the directive asks
    plain = Block("", "medtwin runs      # what is stored\npython3 -m pytest\n")
    assert [argv for _, argv in _selected_commands(plain)] == [["medtwin", "runs"]]


def test_a_scenario_fragment_is_planned_against_the_packaged_bench(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    page = tmp_path / "page.md"
    page.write_text('<!-- medtwin: scenario-part -->\n```toml\nduration = "3h"\n```\n')
    _evaluate_page(page, tmp_path_factory)  # a valid fragment of iec-flow-5mlh passes
    bad = tmp_path / "bad.md"
    bad.write_text(
        "<!-- medtwin: scenario-part -->\n```toml\n"
        '[[steps]]\nat = "1min"\naction = "set_rate"\ndevice = "nowhere"\nrate_ml_h = 5.0\n'
        "```\n"
    )
    with pytest.raises(Exception, match="nowhere"):
        _evaluate_page(bad, tmp_path_factory)
