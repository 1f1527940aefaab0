"""Shared test configuration.

The leak checks (tasks, ptys, sockets, threads) come from medtwin's own pytest plugin,
enabled for every test by ``hil_leak_check = "all"`` in pyproject.toml.
"""
