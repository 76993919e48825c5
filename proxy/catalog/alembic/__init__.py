"""The catalog's Alembic environment (env.py) and revisions, run by proxy.catalog.upgrade."""
