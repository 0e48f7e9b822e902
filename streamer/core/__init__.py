"""Per hop: rings, the pipeline from samples to one event, change detector, temporal model, event bus."""
