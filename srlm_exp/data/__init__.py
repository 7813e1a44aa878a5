"""Real seed data sources (Open Assistant oasst1) for the IFT / EFT seed sets."""
from .oasst import (
    Thread, first_turn_threads, ift_rows, load_oasst_messages, ranked_sets, select_eft,
    split_seed_data, write_split,
)

__all__ = [
    "Thread", "load_oasst_messages", "first_turn_threads", "ift_rows", "ranked_sets",
    "split_seed_data", "select_eft", "write_split",
]
