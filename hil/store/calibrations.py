"""Device calibrations: numbered versions of fitted twin parameters per physical device.

A device is keyed ``"model/serial"``; each save adds version n + 1 (the fit itself is
:mod:`medtwin.hil.calibration`). Versions are never overwritten, so a report can always
say which calibration was in force for a run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from medtwin.drivers.errors import StorageError
from medtwin.hil.store.codec import from_json, to_json
from medtwin.hil.store.core import INSERT_RETRIES, StoreCore, check_text, optional_float
from medtwin.hil.store.records import CalibrationRecord
from medtwin.hil.store.schema import CalibrationRow, table
from medtwin.hil.store.writer import utc_now
from sqlalchemy import exc
from sqlmodel import col, select

__all__ = ["CalibrationStore"]


class CalibrationStore(StoreCore):
    """Saving and reading device calibrations (a part of ``RunStore``)."""

    def save_calibration(
        self,
        device_key: str,
        *,
        params: Mapping[str, Mapping[str, Any]],
        run_id: int | None = None,
        correlation: Any = None,
        residual_rms_before: float | None = None,
        residual_rms_after: float | None = None,
        note: str = "",
    ) -> CalibrationRecord:
        """Store a new calibration version for a device and return it.

        Parameters
        ----------
        device_key : str
            ``"model/serial"`` of the physical device.
        params : dict
            ``{name: {"value": float, "stderr": float | None}}`` (stderr may be inf or
            NaN when a parameter is not identifiable).
        run_id : int, optional
            The run the fit used (must exist).
        correlation : JSON-able, optional
            Parameter correlation (e.g. ``{"names": [...], "matrix": [[...]]}`` or an
            ndarray, stored as nested lists).
        residual_rms_before, residual_rms_after : float, optional
            RMS of the real − twin residual before and after the fit, in the unit of the
            fitted channel.
        note : str
            Free text.

        Returns
        -------
        CalibrationRecord
            With ``version`` one above the device's latest (1 for the first).
        """
        self._check_open()
        if (
            not isinstance(device_key, str)
            or "/" not in device_key
            or not all(part.strip() for part in device_key.rpartition("/")[::2])
            or len(device_key) > 400
        ):
            raise StorageError(
                f"device_key {device_key!r}: expected 'model/serial' (both non-empty)"
            )
        params_json = self._check_params(params)
        correlation_json = to_json(correlation, where="correlation")
        before = optional_float(residual_rms_before, field="residual_rms_before", nan_as_none=True)
        after = optional_float(residual_rms_after, field="residual_rms_after", nan_as_none=True)
        check_text(note, field="note")
        cal = table(CalibrationRow)
        for _ in range(INSERT_RETRIES):
            created = utc_now()
            try:
                doing = f"saving a calibration of {device_key!r}"
                with self._backend.connection(doing, transaction=True) as conn:
                    if run_id is not None:
                        self._require_run(conn, run_id)
                    latest = conn.execute(
                        sa.select(sa.func.max(cal.c.version)).where(cal.c.device_key == device_key)
                    ).scalar()
                    version = int(latest or 0) + 1
                    new_id = conn.execute(
                        sa.insert(cal)
                        .values(
                            device_key=device_key,
                            version=version,
                            created_utc=created,
                            run_id=run_id,
                            params=params_json,
                            correlation=correlation_json,
                            residual_rms_before=before,
                            residual_rms_after=after,
                            note=note,
                        )
                        .returning(cal.c.id)
                    ).scalar_one()
            except StorageError as error:
                if isinstance(error.__cause__, exc.IntegrityError):
                    continue  # another process took this version number: take the next
                landed = self._calibration_saved_at(device_key, created)
                if landed is not None:
                    return landed  # committed, and only the acknowledgement was lost
                raise
            return CalibrationRecord(
                id=int(new_id),
                device_key=device_key,
                version=version,
                created_utc=created,
                run_id=run_id,
                params=from_json(params_json),
                correlation=from_json(correlation_json),
                residual_rms_before=before,
                residual_rms_after=after,
                note=note,
            )
        raise StorageError(f"saving a calibration of {device_key!r} kept conflicting; try again")

    @staticmethod
    def _check_params(params: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        if not isinstance(params, Mapping) or not params:
            raise StorageError("params: expected {name: {'value': float, 'stderr': float}}")
        result: dict[str, Any] = {}
        for name, entry in params.items():
            where = f"params.{name}"
            if not isinstance(name, str) or not name:
                raise StorageError(f"params: parameter names must be strings, got {name!r}")
            if not isinstance(entry, Mapping) or "value" not in entry:
                raise StorageError(f"{where}: expected {{'value': float, 'stderr': float}}")
            unknown = sorted(set(entry) - {"value", "stderr"})
            if unknown:
                raise StorageError(f"{where}: unknown key(s) {', '.join(unknown)}")
            value = optional_float(entry["value"], field=f"{where}.value", nan_as_none=False)
            if value is None or not math.isfinite(value):
                raise StorageError(f"{where}.value: expected a finite number")
            stderr = entry.get("stderr")
            if stderr is not None:
                if isinstance(stderr, bool) or not isinstance(
                    stderr, int | float | np.integer | np.floating
                ):
                    raise StorageError(f"{where}.stderr: expected a number or None")
                stderr = float(stderr)
            result[name] = to_json({"value": value, "stderr": stderr}, where=where)
        return result

    def _calibration_saved_at(self, device_key: str, created: datetime) -> CalibrationRecord | None:
        """The calibration of ``device_key`` created at ``created``, if a save whose
        commit was reported as failed went through all the same; None when it did not or
        the database cannot say (the caller then reports the original error)."""
        try:
            with self._backend.session(f"checking the calibrations of {device_key!r}") as session:
                row = session.exec(
                    select(CalibrationRow).where(
                        CalibrationRow.device_key == device_key,
                        CalibrationRow.created_utc == created,
                    )
                ).first()
                return None if row is None else self._calibration(row)
        except StorageError:
            return None

    @staticmethod
    def _calibration(row: Any) -> CalibrationRecord:
        return CalibrationRecord(
            id=int(row.id),
            device_key=row.device_key,
            version=int(row.version),
            created_utc=row.created_utc,
            run_id=row.run_id,
            params=from_json(row.params),
            correlation=from_json(row.correlation),
            residual_rms_before=row.residual_rms_before,
            residual_rms_after=row.residual_rms_after,
            note=row.note,
        )

    def calibrations(self, device_key: str) -> list[CalibrationRecord]:
        """Every calibration of a device, version 1 first."""
        self._check_open()
        with self._backend.session(f"reading calibrations of {device_key!r}") as session:
            rows = session.exec(
                select(CalibrationRow)
                .where(CalibrationRow.device_key == device_key)
                .order_by(col(CalibrationRow.version))
            ).all()
            return [self._calibration(row) for row in rows]

    def latest_calibration(self, device_key: str) -> CalibrationRecord | None:
        """The highest version calibrated for a device, or None if it has none."""
        self._check_open()
        with self._backend.session(f"reading calibrations of {device_key!r}") as session:
            row = session.exec(
                select(CalibrationRow)
                .where(CalibrationRow.device_key == device_key)
                .order_by(col(CalibrationRow.version).desc())
                .limit(1)
            ).first()
            return None if row is None else self._calibration(row)
