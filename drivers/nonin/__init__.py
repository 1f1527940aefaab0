"""Nonin pulse oximeters: serial data formats #2, #7 and #8 and the format-switch command."""
