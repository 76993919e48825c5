"""The entry file format: a damaged file is told apart, never decoded as an entry."""

from __future__ import annotations

import zlib

import pytest

from proxy.cache.entry import CacheEntry, decode, encode, strong_etag

ENTRY = CacheEntry.create(
    b"\x89PNG" + bytes(range(256)) * 40,
    "image/png",
    stored_at=1700000000.5,
    ttl=3600,
    upstream_etag='"up-1"',
    upstream_last_modified="Wed, 21 Oct 2015 07:28:00 GMT",
)


def file_of(entry: CacheEntry) -> bytes:
    head, body = encode(entry)
    return head + body


def test_round_trip_keeps_every_field():
    back = decode(file_of(ENTRY))
    assert back == ENTRY
    assert back is not None and back.headers == {
        "ETag": ENTRY.etag,
        "Cache-Control": "max-age=3600",
        "Content-Type": "image/png",
    }


def test_etag_is_a_strong_quoted_digest_of_the_body():
    assert ENTRY.etag == strong_etag(ENTRY.body)
    assert ENTRY.etag.startswith('"') and ENTRY.etag.endswith('"') and len(ENTRY.etag) == 34
    other = CacheEntry.create(ENTRY.body + b"x", "image/png", stored_at=0, ttl=1)
    assert other.etag != ENTRY.etag


def test_negative_entry_round_trips():
    entry = CacheEntry.missing(stored_at=5.0, ttl=60)
    back = decode(file_of(entry))
    assert back is not None and back.negative and back.body == b""
    assert "Content-Type" not in back.headers


def test_refreshed_moves_stored_at_only():
    again = ENTRY.refreshed(1700009999.0, 7200)
    assert (again.stored_at, again.ttl, again.body, again.etag) == (
        1700009999.0,
        7200,
        ENTRY.body,
        ENTRY.etag,
    )
    assert again.headers["Cache-Control"] == "max-age=7200"


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


GOOD = file_of(ENTRY)
DAMAGED = {
    "empty": b"",
    "prefix only": GOOD[:10],
    "truncated header": GOOD[:20],
    "truncated body": GOOD[:-1],
    "half the body": GOOD[: len(GOOD) // 2],
    "padded": GOOD + b"\0",
    "bad magic": b"XXXX" + GOOD[4:],
    "newer version": GOOD[:3] + b"\x02" + GOOD[4:],
    "flipped body byte": flip(GOOD, len(GOOD) - 100),
    "flipped header byte": flip(GOOD, 20),
    "flipped header crc": flip(GOOD, 9),
    "huge header length": GOOD[:4] + b"\xff\xff\xff\x7f" + GOOD[8:],
}


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_damaged_files_are_rejected(name):
    assert decode(DAMAGED[name]) is None


def test_crc_is_what_catches_a_same_length_change():
    # A flipped body byte keeps every length right: only the CRC tells.
    data = DAMAGED["flipped body byte"]
    assert len(data) == len(GOOD)
    assert zlib.crc32(data[-len(ENTRY.body) :]) != zlib.crc32(ENTRY.body)
