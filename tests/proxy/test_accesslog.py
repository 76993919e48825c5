"""The access logger costs nothing when its level is off (it is on the tile hit path)."""

from __future__ import annotations

import logging

from proxy.accesslog import RedactingAccessLogger


def test_the_access_log_is_skipped_above_info():
    logger = logging.getLogger("test.access")
    access = RedactingAccessLogger(logger, "")
    logger.setLevel(logging.WARNING)
    assert not access.enabled  # aiohttp then never calls log(): no line is formatted
    logger.setLevel(logging.INFO)
    assert access.enabled
