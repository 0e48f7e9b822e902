"""Scoring a labelled folder the daemon's way, clip by clip or as a stream a lamp sees; replays of other settings."""
