"""The device side of each protocol ("virtual hardware"), backed by device_models."""
