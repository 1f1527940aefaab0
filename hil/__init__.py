"""medtwin's orchestration layer: benches, scenarios, runner, twin, comparator, store,
analyses, calibration, reports and the command line."""
