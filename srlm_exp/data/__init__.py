"""Seed data: the interface every source implements (seed_data.py) and Open Assistant (oasst.py)."""
