"""Upstream quotas (issue 13): per-server budgets of requests and bytes, enforced before sending.

``model`` (the config field), ``periods`` (which slots count now, when a quota frees up),
``store`` (counters in the catalog file, exact across processes), ``enforce`` (the gate
every upstream request of a saved server passes), ``share`` (what an import would use),
``gauges`` (metrics) and ``cli`` (``imagery-proxy servers usage``).
"""
