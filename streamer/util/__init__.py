"""Small tools every part uses: atomic writes, retry delays, logging, process tuning, how to add an extra."""
