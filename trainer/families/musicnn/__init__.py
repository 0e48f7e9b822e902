"""The musicnn family: MSD-musicnn and AudioSet networks as teachers, heads on their embeddings, a student."""
