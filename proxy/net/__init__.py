"""Outbound HTTP: one client session, address policy, per-server limits."""
