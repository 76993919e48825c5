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


def test_tile_cache_hits_are_logged_at_debug_and_the_rest_at_info(caplog):
    from unittest.mock import Mock

    from aiohttp import web

    logger = logging.getLogger("test.access.levels")
    access = RedactingAccessLogger(logger, "")
    request = Mock(remote="127.0.0.1", method="GET", path_qs="/servers/a/tiles/1/2/3?token=s3cr3t")

    def answer(status: int, cache: str | None) -> web.Response:
        resp = web.Response(status=status, body=b"x")
        if cache:
            resp.headers["X-Cache"] = cache
        return resp

    with caplog.at_level(logging.INFO, logger="test.access.levels"):
        access.log(request, answer(200, "HIT"), 0.001)
        access.log(request, answer(304, "HIT"), 0.001)
        access.log(request, answer(200, "MISS"), 0.001)
        access.log(request, answer(200, "STALE"), 0.001)
        access.log(request, answer(502, None), 0.001)
    assert [r.levelno for r in caplog.records] == [logging.INFO] * 3
    assert all("s3cr3t" not in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="test.access.levels"):
        access.log(request, answer(200, "HIT"), 0.001)
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]
