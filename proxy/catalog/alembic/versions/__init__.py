"""The catalog's schema revisions, oldest first (r0001_baseline, ...)."""
