"""Small tools every part uses: atomic writes, retry delays, logging, process tuning."""
