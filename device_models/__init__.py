"""Pure physics and behaviour of the devices on an infusion test bench.

numpy/scipy only: no I/O, no asyncio, no SQL. See :mod:`medtwin.device_models.base` for the
contract every model follows.
"""
