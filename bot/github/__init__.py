"""Tarmac as a GitHub App: webhooks in, GitHub calls out through the outbox."""
