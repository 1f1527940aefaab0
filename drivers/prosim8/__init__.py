"""Fluke Biomedical ProSim 8 vital-signs simulator: its remote-control protocol."""
