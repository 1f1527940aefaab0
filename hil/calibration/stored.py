"""Calibrations kept per device: storing a fit as a new version, and the one in force.

Each physical device has a numbered history of calibrations in the run store
(:meth:`medtwin.hil.store.RunStore.save_calibration` and ``calibrations``), filed under
:func:`medtwin.hil.twin.calibration_key` (``model/serial``, or
``model/<bench>:<device>`` for a device that reports no serial, as the NE-1000 does). A bench
with ``[twin] calibration = "latest"`` runs its twin with the newest version;
:func:`calibration_in_force` finds, for a stored run, the version its twin used.

The run is read as stored (bench text, twin parameters, device identities) without
validating the bench again: a run whose bench no longer validates still shows its
calibration.
"""

from __future__ import annotations

import math
import numbers
import tomllib
from collections.abc import Mapping
from typing import Any

from medtwin.drivers.base import DeviceIdentity
from medtwin.hil.calibration.results import Calibration
from medtwin.hil.store import CalibrationRecord, RunData, RunStore
from medtwin.hil.twin import calibration_key

__all__ = [
    "calibrated_device",
    "calibration_in_force",
    "calibration_keys",
    "calibration_matches",
    "calibration_mode",
    "save_calibration",
    "stored_value",
]


def save_calibration(
    store: RunStore, calibration: Calibration, *, note: str = ""
) -> CalibrationRecord:
    """Store ``calibration`` as the next version of its device's calibration."""
    return store.save_calibration(
        calibration.device_key,
        params=calibration.stored_params(),
        run_id=calibration.run_id,
        correlation=calibration.correlation_json(),
        residual_rms_before=calibration.residual_rms_before,
        residual_rms_after=calibration.residual_rms_after,
        note=note,
    )


def _twin_table(run: RunData) -> dict[str, Any]:
    """The ``[twin]`` table of the run's stored bench file ({} when it does not parse)."""
    try:
        twin = tomllib.loads(run.bench_text).get("twin")
    except tomllib.TOMLDecodeError:
        return {}
    return twin if isinstance(twin, dict) else {}


def calibration_mode(run: RunData) -> Any:
    """The bench's ``[twin] calibration`` setting as stored with the run (``"none"`` when
    the bench does not set it): ``"latest"`` runs the twin with the newest calibration."""
    return _twin_table(run).get("calibration", "none")


def calibrated_device(run: RunData) -> str | None:
    """The device whose calibration the run's twin uses: the bench's ``[twin] device``, else
    the first pump, else the first device (None for a run without devices)."""
    twin = _twin_table(run)
    if isinstance(twin.get("device"), str):
        return str(twin["device"])
    for device in run.devices:
        if device.kind == "pump":
            return device.name
    return run.devices[0].name if run.devices else None


def calibration_keys(run: RunData, device_name: str | None) -> list[str]:
    """Keys the device's calibrations may be filed under, from the identity it reported.

    :func:`medtwin.hil.twin.calibration_key` files them and :mod:`medtwin.hil.runner` looks
    them up the same way; runs stored before that rule used
    :attr:`medtwin.drivers.base.DeviceIdentity.key`, so both are searched.
    """
    for device in run.devices:
        if device.name != device_name:
            continue
        model = str(device.identity.get("model") or "").strip()
        serial = str(device.identity.get("serial") or "").strip()
        if not model:
            return []
        filed = calibration_key(model, serial, bench=run.info.bench_name, device=device.name)
        looked_up = DeviceIdentity(protocol=device.protocol, model=model, serial=serial).key
        return list(dict.fromkeys([filed, looked_up]))
    return []


def stored_value(params: Any, name: str) -> Any:
    """The value of dotted parameter ``name`` in stored (nested JSON) twin parameters, or
    None when it is not there."""
    node = params
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def calibration_matches(record: CalibrationRecord, twin_params: Any) -> bool | None:
    """True when every calibrated value is the run's twin parameter, False when one
    differs, None when a parameter is not in the stored twin parameters (cannot tell)."""
    verdict: bool | None = True
    for name, entry in record.params.items():
        stored = _finite(stored_value(twin_params, name))
        value = _finite(entry.get("value"))
        if stored is None or value is None:
            verdict = None
            continue
        if not math.isclose(stored, value, rel_tol=1e-12, abs_tol=1e-15):
            return False
    return verdict


def calibration_in_force(store: RunStore, run: RunData) -> CalibrationRecord | None:
    """The calibration the twin of ``run`` used, or None for a nominal twin.

    A twin is calibrated when the bench file says ``[twin] calibration = "latest"``; the
    runner records the version it took in the run's summary (``calibration``: device key,
    version, id), and that is the one returned. For runs stored without that record, it is
    found again: the newest version whose values are exactly the twin parameters stored
    with the run, else the newest one created before the run started (the report then
    flags that the values differ from the run's twin).

    Raises
    ------
    StorageError
        The calibrations cannot be read.
    """
    if calibration_mode(run) != "latest":
        return None
    used = run.summary.get("calibration") if isinstance(run.summary, Mapping) else None
    if isinstance(used, Mapping) and used.get("device_key"):
        for record in store.calibrations(str(used["device_key"])):
            if record.version == used.get("version"):
                return record
    records = [
        record
        for key in calibration_keys(run, calibrated_device(run))
        for record in store.calibrations(key)
    ]
    records.sort(key=lambda r: r.created_utc)
    for record in reversed(records):
        if calibration_matches(record, run.twin_params):
            return record
    earlier = [r for r in records if r.created_utc <= run.info.started_utc]
    return earlier[-1] if earlier else None
