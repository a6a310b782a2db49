"""Sampling backends (worker side): local transformers models and OpenAI-compatible servers."""
