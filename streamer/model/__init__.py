"""The model file: its embedded metadata, the LiteRT runner, and the shipped models by short name."""
