"""Small tools every part uses: atomic writes, retry delays, logging, tuning, terminal-safe text, adding an extra."""
