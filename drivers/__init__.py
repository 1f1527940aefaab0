"""Async device I/O: transports, protocol codecs and one driver per protocol.

Pick a driver by protocol name with :func:`medtwin.drivers.registry.driver_class`.
"""
