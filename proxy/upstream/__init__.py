"""Upstream adapters: one per server type, each implementing a streaming source."""
