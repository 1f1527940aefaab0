"""Async device I/O: transports, protocol codecs and one driver per protocol.

Pick a driver by protocol name with :func:`drivers.registry.driver_class`.
"""
