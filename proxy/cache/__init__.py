"""Caches of the service: server fingerprints and opened sources (tiles next)."""
