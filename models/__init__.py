"""The models that ship, with their model card: package data (``moodstream_models`` once
installed), so that a wheel carries them and ``moodstream run`` works without a checkout."""
