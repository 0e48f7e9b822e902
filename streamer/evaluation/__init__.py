"""Scoring a labelled folder the daemon's way: the folder, the metrics, the evaluation itself."""
