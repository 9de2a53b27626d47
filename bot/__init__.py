"""Tarmac: turns tags into release candidates and drives their deployments."""
