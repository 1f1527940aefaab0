"""Analyses of recorded runs: pure functions over arrays that return dataclasses."""
