"""The use cases every adapter goes through."""
