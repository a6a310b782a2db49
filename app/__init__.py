"""Preflab: preference labeling for language models."""
