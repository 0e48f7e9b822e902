"""The musicnn family: musicnn's MSD network as a teacher, a head on its embeddings, and its distilled student."""
