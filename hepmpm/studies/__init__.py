"""Studies of what pre-training buys: label scans, new classes, CWoLa, sim-to-real."""
