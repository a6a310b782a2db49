"""Reward-model and DPO trainers (worker side; params.py and items.py are torch-free)."""
