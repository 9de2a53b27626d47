"""GitHub calls out: the outbox worker, catch-up, one module per effect family."""
