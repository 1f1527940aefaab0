"""Measurement verdicts of a run: validated, stored, replaced when an analysis runs again.

A verdict has the shape of :meth:`medtwin.hil.measurements.Verdict.as_dict` (OpenHTF's
measurement model: limits, marginal limits, outcome).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any, Final

import sqlalchemy as sa
from medtwin.drivers.errors import StorageError
from medtwin.hil.store.core import StoreCore, check_text, optional_float
from medtwin.hil.store.records import Outcome, Source
from medtwin.hil.store.schema import VerdictRow, table

__all__ = ["VerdictStore"]

_VERDICT_KEYS: Final = (
    "measurement",
    "name",  # the same as "measurement": hil.measurements.Verdict.as_dict() calls it so
    "source",
    "value",
    "units",
    "lower",
    "upper",
    "marginal_lower",
    "marginal_upper",
    "outcome",
    "description",
    "note",
    # Verdict.as_dict() says whether the limits were declared or defaulted; the run's stored
    # analysis keeps that ("parameters"), so the verdict row needs no column for it.
    "limits_source",
)


class VerdictStore(StoreCore):
    """Saving a run's verdicts (a part of ``RunStore``; ``load_run`` reads them back)."""

    def save_verdicts(self, run_id: int, verdicts: Iterable[Mapping[str, Any] | Any]) -> None:
        """Store measurement verdicts of a run (replacing earlier ones of the same
        measurement and source, so re-running an analysis is idempotent).

        Each verdict is a dict with ``measurement`` (or ``name``: str), ``source``
        ("real" | "twin"), ``outcome`` ("PASS" | "FAIL" | "MARGINAL" | "UNSET", or an
        enum with those values) and optionally ``value``, ``units``, ``lower``,
        ``upper``, ``marginal_lower``, ``marginal_upper`` (numbers or None),
        ``description`` and ``note`` (str): the shape of
        :meth:`medtwin.hil.measurements.Verdict.as_dict`. An object with an ``as_dict()`` method
        (a ``Verdict``) is taken as its dict. A NaN ``value`` is stored as None (no value).

        Raises
        ------
        RunNotFound
            No run ``run_id``.
        StorageError
            An invalid verdict (nothing is stored) or a database error.
        """
        self._check_open()
        rows = []
        seen: set[tuple[str, str]] = set()
        for i, verdict in enumerate(verdicts):
            row = self._verdict_row(verdict, where=f"verdicts[{i}]")
            key = (row["measurement"], row["source"])
            if key in seen:
                raise StorageError(
                    f"verdicts[{i}]: {row['source']} measurement {row['measurement']!r} "
                    "appears twice"
                )
            seen.add(key)
            rows.append(row)
        verdict_table = table(VerdictRow)
        with self._backend.connection(f"saving verdicts of run {run_id}", transaction=True) as conn:
            self._require_run(conn, run_id)
            for row in rows:
                conn.execute(
                    sa.delete(verdict_table).where(
                        verdict_table.c.run_id == run_id,
                        verdict_table.c.measurement == row["measurement"],
                        verdict_table.c.source == row["source"],
                    )
                )
            if rows:
                conn.execute(sa.insert(verdict_table), [{"run_id": run_id, **row} for row in rows])

    @staticmethod
    def _verdict_row(verdict: Mapping[str, Any] | Any, *, where: str) -> dict[str, Any]:
        if not isinstance(verdict, Mapping) and callable(getattr(verdict, "as_dict", None)):
            verdict = verdict.as_dict()
        if not isinstance(verdict, Mapping):
            raise StorageError(f"{where}: expected a dict, got {type(verdict).__name__}")
        unknown = sorted(set(verdict) - set(_VERDICT_KEYS))
        if unknown:
            raise StorageError(
                f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; expected "
                + ", ".join(_VERDICT_KEYS)
            )
        both = "measurement" in verdict and "name" in verdict
        if both and verdict["measurement"] != verdict["name"]:
            raise StorageError(f"{where}: measurement and name differ; give the name once")
        measurement = verdict.get("measurement", verdict.get("name"))
        if not isinstance(measurement, str) or not measurement or len(measurement) > 200:
            raise StorageError(f"{where}.measurement: expected a non-empty name (≤ 200 chars)")

        def word(key: str) -> str:
            value = verdict.get(key)
            return str(value.value if isinstance(value, Enum) else value)

        try:
            source = Source(word("source"))
        except ValueError:
            raise StorageError(
                f"{where}.source: {verdict.get('source')!r}: expected 'real' or 'twin'"
            ) from None
        try:
            outcome = Outcome(word("outcome"))
        except ValueError:
            raise StorageError(
                f"{where}.outcome: {verdict.get('outcome')!r}: expected PASS, FAIL, MARGINAL "
                "or UNSET"
            ) from None
        units = verdict.get("units", "")
        check_text(units, field=f"{where}.units", max_len=32)
        description = verdict.get("description", "")
        check_text(description, field=f"{where}.description")
        note = verdict.get("note", "")
        check_text(note, field=f"{where}.note")
        row: dict[str, Any] = {
            "measurement": measurement,
            "source": str(source),
            "outcome": str(outcome),
            "units": units,
            "description": description,
            "note": note,
            "value": optional_float(verdict.get("value"), field=f"{where}.value", nan_as_none=True),
        }
        for key in ("lower", "upper", "marginal_lower", "marginal_upper"):
            row[key] = optional_float(verdict.get(key), field=f"{where}.{key}", nan_as_none=False)
        for low, high in (("lower", "upper"), ("marginal_lower", "marginal_upper")):
            if row[low] is not None and row[high] is not None and row[low] > row[high]:
                raise StorageError(f"{where}: {low}={row[low]} is above {high}={row[high]}")
        return row
