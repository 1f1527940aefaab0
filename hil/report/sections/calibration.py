"""Section "Twin calibration": the calibration the run's twin used, or the nominal twin.

The record comes from :func:`medtwin.hil.calibration.calibration_in_force`; this section
shows it and checks that its values are the twin parameters stored with the run.
"""

from __future__ import annotations

import json

from medtwin.hil.calibration.stored import (
    calibrated_device,
    calibration_keys,
    calibration_matches,
    calibration_mode,
    stored_value,
)
from medtwin.hil.report.markup import _esc, _facts, _num, _table, _utc
from medtwin.hil.report.model import _Context
from medtwin.hil.report.values import _plain


def _section_calibration(ctx: _Context) -> tuple[bool, str]:
    run, record = ctx.run, ctx.calibration
    mode = calibration_mode(run)
    device = calibrated_device(run)
    keys = calibration_keys(run, device)
    params_block = (
        "<details><summary>twin parameters of this run (as stored with it)</summary><pre>"
        + _esc(json.dumps(_plain(run.twin_params), indent=2, ensure_ascii=False))
        + "</pre></details>"
    )
    if record is None:
        if mode == "latest":
            return True, (
                f'<p class="warn">The bench asks for the latest calibration of '
                f"<code>{_esc(' or '.join(keys) or device)}</code> "
                '([twin] calibration = "latest"), but '
                "no calibration record was found for it; the parameters below are what the "
                "twin used.</p>" + params_block
            )
        return True, (
            '<p class="calibration-none">nominal twin, no calibration '
            f"(the bench's [twin] calibration is {_esc(json.dumps(mode))})</p>" + params_block
        )
    matches = calibration_matches(record, run.twin_params)
    if matches:
        status = (
            '<p class="ok">In force: every calibrated value is the value the twin of this '
            "run used.</p>"
        )
    elif matches is None:
        status = (
            '<p class="warn">Could not verify that this calibration was in force: a '
            "calibrated parameter is not among the twin parameters stored with the run.</p>"
        )
    else:
        status = (
            '<p class="warn">This calibration differs from the twin parameters stored with '
            "the run: the twin of this run did not use these values.</p>"
        )
    facts = _facts(
        [
            ("device", _esc(f"{device} ({record.device_key})")),
            ("version", _esc(record.version)),
            ("created (UTC)", _esc(_utc(record.created_utc))),
            ("fitted on run", _esc(record.run_id if record.run_id is not None else "—")),
            ("residual RMS before fit", _num(record.residual_rms_before)),
            ("residual RMS after fit", _num(record.residual_rms_after)),
            ("note", _esc(record.note or "—")),
        ]
    )
    rows = []
    for name, entry in record.params.items():
        rows.append(
            [
                f"<code>{_esc(name)}</code>",
                _num(entry.get("value"), 8),
                _num(entry.get("stderr"), 3),
                _num(stored_value(run.twin_params, name), 8),
            ]
        )
    table = _table(
        ["parameter", "calibrated value", "standard error", "value in this run's twin"],
        rows,
        table_id="calibration-table",
    )
    return True, status + facts + table + params_block
