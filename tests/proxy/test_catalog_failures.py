"""Issue 9 item 8: a read-only or damaged catalog. Tests run as root, which ignores file
modes, so a read-only file is made with ``chattr +i`` (what a read-only mount does), or
``PRAGMA query_only`` on the live connection (a disk that turns read-only mid-run)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from proxy.cli import main
from proxy.keys import SERVICES

SERVER = {"type": "xyz", "name": "t", "url": "http://t.example.com/{z}/{x}/{y}.png"}


async def test_a_catalog_turned_read_only_answers_503_and_keeps_its_data(api):
    created = await (await api.post("/servers", json=SERVER)).json()
    db = api.app[SERVICES].catalog.database
    await db.run(lambda c: c.execute("PRAGMA query_only = ON"))
    ready = await api.get("/ready")
    assert ready.status == 503
    assert (await ready.json())["error"]["code"] == "catalog_unavailable"
    for method, path in [
        ("POST", "/servers"),
        ("PATCH", f"/servers/{created['id']}"),
        ("DELETE", f"/servers/{created['id']}"),
    ]:
        resp = await api.request(method, path, json=SERVER if method == "POST" else {"name": "x"})
        assert resp.status == 503, (method, await resp.text())
        body = await resp.json()
        assert body["error"]["code"] == "catalog_unavailable" and body["error"]["hint"]
    listed = await (await api.get("/servers")).json()
    assert [s["id"] for s in listed["servers"]] == [created["id"]]
    await db.run(lambda c: c.execute("PRAGMA query_only = OFF"))
    assert (await api.get("/ready")).status == 200


def test_a_damaged_catalog_stops_the_start_in_one_line_untouched(tmp_path, capsys):
    data = tmp_path / "d"
    data.mkdir()
    junk = b"this is not a SQLite file" * 100
    (data / "catalog.sqlite").write_bytes(junk)
    assert main(["--data-dir", str(data), "servers", "list"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "catalog" in err and "Traceback" not in err
    assert (data / "catalog.sqlite").read_bytes() == junk


def _immutable(path, on: bool) -> bool:
    chattr = shutil.which("chattr")
    if chattr is None:
        return False
    done = subprocess.run([chattr, "+i" if on else "-i", str(path)], capture_output=True)
    return done.returncode == 0


def test_an_unwritable_catalog_stops_the_start(tmp_path, capsys):
    data = str(tmp_path / "d")
    add = ["servers", "add", "--type", "xyz", "--name", "t", "--url", SERVER["url"]]
    assert main(["--data-dir", data, *add]) == 0
    capsys.readouterr()
    path = tmp_path / "d" / "catalog.sqlite"
    if os.geteuid() != 0:
        path.chmod(0o444)
        path.parent.chmod(0o555)
    elif not _immutable(path, True):
        pytest.skip("running as root without chattr: no way to make a read-only file")
    try:
        assert main(["--data-dir", data, "servers", "list"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "read-only" in err and "Traceback" not in err
    finally:
        if os.geteuid() == 0:
            _immutable(path, False)
        else:
            path.parent.chmod(0o755)
            path.chmod(0o644)
    assert main(["--data-dir", data, "servers", "list", "--json"]) == 0
    assert '"name": "t"' in capsys.readouterr().out  # nothing stored was lost
