"""What a patient monitor or pulse oximeter shows, given the patient: its own behaviour.

HR from R-R intervals, SpO2 averaging, freeze-then-invalid on signal loss, and an alarm
engine in IEC 60601-1-8 terms (alarm condition delay and alarm signal generation delay kept
apart, every alarm with its t1, t2 and t3). Pure models (numpy/scipy only).

Modules (imported by their full names, e.g. ``medtwin.device_models.monitor.monitor``):

* :mod:`.params` — :class:`MonitorParams` (``hr``, ``spo2``, ``alarms`` groups) and
  ``monitor_preset("generic" | "masimo" | "nonin" | "philips" | "mindray", overrides)``;
* :mod:`.hr` — R-R averaging (12-interval mean, trimmed mean, the slow-rate rule) and the
  step-response criterion;
* :mod:`.spo2` — window and beat-exponential averaging, signal validity, freeze;
* :mod:`.alarms` — :class:`Alarm` records and the episode logic (delay, SatSeconds);
* :mod:`.monitor` — :class:`MonitorInput`, :class:`MonitorOutput`,
  :func:`simulate_monitor` (batch), :func:`simulate_monitors` (several parameter sets)
  and :class:`MonitorStream` (incremental, same result).

See docs/monitor-model.md.
"""
