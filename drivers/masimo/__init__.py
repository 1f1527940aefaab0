"""Masimo pulse oximeters (Radical-7, Rad-8, Root): the ASCII 1 serial output."""
