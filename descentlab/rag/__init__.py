"""SPEC part E: training language models for retrieval-augmented generation."""
