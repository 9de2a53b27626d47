"""The decisions, as pure functions over plain values."""
