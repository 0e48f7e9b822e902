"""Per hop: rings, the pipeline from samples to one event, smoothing, and the event bus."""
