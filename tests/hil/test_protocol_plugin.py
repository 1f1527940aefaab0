"""A protocol from a separate distribution, registered through the entry point alone.

The test builds a lab's distribution (``acme-medtwin``) in a temporary folder: a wheel
declaring one ``medtwin.protocols`` entry point, holding a module whose protocol,
``acme-ne1000``, reuses our NE-1000 driver and emulator by subclassing (a rebadged pump
speaking the same protocol). pip installs it into a folder of its own, and the ``medtwin``
command, run with that folder on ``PYTHONPATH`` and no code of ours changed, lists it,
emulates it and runs a bench with it on the virtual clock.

The wheel is assembled here, file by file (PEP 427: the module, then ``METADATA``,
``entry_points.txt``, ``WHEEL`` and ``RECORD`` in its ``.dist-info``), rather than built by
a build backend: that needs no package index and takes milliseconds; pip installs it as it
would any wheel, which is what registers the entry point.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from medtwin.drivers.ne1000 import NE1000Pump

DIST_INFO = "acme_medtwin-0.3.0.dist-info"

#: The distribution's metadata files: what a pyproject.toml with
#: ``[project.entry-points."medtwin.protocols"] acme-ne1000 = "acme_medtwin:ACME_NE1000"``
#: builds into.
METADATA = {
    "METADATA": "Metadata-Version: 2.1\nName: acme-medtwin\nVersion: 0.3.0\n",
    "entry_points.txt": "[medtwin.protocols]\nacme-ne1000 = acme_medtwin:ACME_NE1000\n",
    "WHEEL": "Wheel-Version: 1.0\nGenerator: medtwin-tests\nRoot-Is-Purelib: true\n"
    "Tag: py3-none-any\n",
    "top_level.txt": "acme_medtwin\n",
}

MODULE = '''
"""ACME's rebadged NE-1000: the same RS-232 protocol under the lab's own name."""

from medtwin.drivers.descriptors import NE1000EmulatorOptions, NE1000Options
from medtwin.drivers.emulators.ne1000 import NE1000Emulator
from medtwin.drivers.ne1000 import NE1000Pump
from medtwin.drivers.protocol import LineSpec, ProtocolDescriptor


class AcmePump(NE1000Pump):
    protocol = "acme-ne1000"


class AcmePumpEmulator(NE1000Emulator):
    pass


ACME_NE1000 = ProtocolDescriptor(
    name="acme-ne1000",
    kind="pump",
    driver="acme_medtwin:AcmePump",
    emulator="acme_medtwin:AcmePumpEmulator",
    mechanism="pump",
    line=LineSpec("serial", ("baudrate",)),
    options=NE1000Options,
    emulator_options=NE1000EmulatorOptions,
    description="ACME syringe pump (NE-1000 protocol)",
)
'''

BENCH = """
name = "acme-bench"

[[devices]]
name = "pump"
kind = "pump"
protocol = "acme-ne1000"
port = "emulated"
line = { baudrate = 19200 }
options = { address = 0 }

[[devices]]
name = "balance"
kind = "balance"
protocol = "mt-sics"
port = "emulated"
line = { baudrate = 9600 }

[emulation]
syringe = "BD Plastipak 50 mL"

[twin]
syringe = "BD Plastipak 50 mL"
"""

SCENARIO = """
name = "acme-flow"
duration = "2min"

[sampling]
balance = "10s"
pump = "30s"

[[steps]]
at = "0s"
action = "set_diameter"
syringe = "BD Plastipak 50 mL"

[[steps]]
at = "0s"
action = "set_rate"
rate_ml_h = 60.0

[[steps]]
at = "0s"
action = "tare"

[[steps]]
at = "0s"
action = "start"
"""


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a ``medtwin`` whose Python also sees acme-medtwin."""
    root = tmp_path_factory.mktemp("acme")
    files = {"acme_medtwin.py": textwrap.dedent(MODULE)}
    files.update({f"{DIST_INFO}/{name}": text for name, text in METADATA.items()})
    record = [f"{name},{_hash(text)},{len(text.encode())}" for name, text in files.items()]
    files[f"{DIST_INFO}/RECORD"] = "\n".join([*record, f"{DIST_INFO}/RECORD,,"]) + "\n"
    wheel = root / "acme_medtwin-0.3.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    site = root / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return env


def _hash(text: str) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _medtwin(env: dict[str, str], *args: str, cwd: Path | None = None) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "medtwin.hil", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    doc: dict[str, object] = json.loads(done.stdout)
    return doc


def test_protocols_lists_the_plugin_with_its_distribution(plugin_env: dict[str, str]) -> None:
    listed = _medtwin(plugin_env, "protocols", "--json")
    by_name = {entry["name"]: entry for entry in listed}  # type: ignore[attr-defined]
    acme = by_name["acme-ne1000"]
    assert acme["kind"] == "pump"
    assert acme["driver"] == "acme_medtwin:AcmePump"
    assert acme["emulator"] == "acme_medtwin:AcmePumpEmulator"
    assert acme["source"] == "acme-medtwin 0.3.0"
    assert (acme["distribution"], acme["version"]) == ("acme-medtwin", "0.3.0")
    assert by_name["ne1000"]["source"] == "built in"


def _emulate(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "medtwin.hil", "emulate", *args, "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


async def test_emulate_serves_the_plugin_protocol(plugin_env: dict[str, str]) -> None:
    proc = _emulate(plugin_env, "pump", "--protocol", "acme-ne1000")
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "the emulator printed nothing"
        doc = json.loads(proc.stdout.readline())
        assert doc["protocol"] == "acme-ne1000"
        # Any NE-1000 client talks to it: it is the same protocol on a pty.
        async with asyncio.timeout(30), NE1000Pump(str(doc["port"])) as pump:
            assert (await pump.identify()).model == "NE-1000"
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0


def test_a_bench_with_the_plugin_protocol_runs_on_the_virtual_clock(
    plugin_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "bench.toml").write_text(BENCH, encoding="utf-8")
    (tmp_path / "scenario.toml").write_text(SCENARIO, encoding="utf-8")
    doc = _medtwin(
        plugin_env,
        "run",
        "bench.toml",
        "scenario.toml",
        "--db",
        f"sqlite:///{tmp_path / 'runs.db'}",
        "--json",
        cwd=tmp_path,
    )
    assert doc["status"] == "completed"
    assert doc["clock"] == "virtual"
    assert doc["devices"]["pump"]["model"] == "NE-1000"  # type: ignore[index]
    assert doc["drift_events"] == []  # the twin agrees with the plug-in's emulated pump
    channels = doc["channels"]
    assert isinstance(channels, dict)
    # sampled every 10 s for 2 min, 0 s included
    assert channels["balance.mass_g"]["n"] == 13
