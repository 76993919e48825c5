"""Names and files of the outputs folder: no path ever leaves it; temporaries; atomic commit."""

from __future__ import annotations

import errno
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.config import load_settings
from proxy.jobs.outputs import (
    MAX_NAME_BYTES,
    CellOutput,
    cell_file_name,
    disk_full,
    inside,
    job_folder_name,
    outputs_root,
    remove_stale_temporaries,
    sanitize,
)


@pytest.mark.parametrize(
    "name, safe",
    [
        ("Lausanne 2024", "Lausanne_2024"),
        ("../../etc/passwd", "etc_passwd"),
        ("/abs/path", "abs_path"),
        ("C:\\Windows\\system32", "C_Windows_system32"),
        ("a\x00b\x1fc\x7fd", "a_b_c_d"),
        ("..", "image"),
        ("", "image"),
        ("   ", "image"),
        (".hidden", "hidden"),
        ("CON", "_CON"),
        ("nul.txt", "_nul.txt"),
        ("lpt9", "_lpt9"),
        ("COM10", "COM10"),
        ("Zürich Süd", "Zürich_Süd"),
        ("ﬁle", "file"),  # NFKC: the ligature is two letters
        ("a/../../b", "a_b"),
    ],
)
def test_names_are_sanitized(name, safe):
    assert sanitize(name) == safe


def test_a_very_long_name_is_cut_to_whole_characters():
    name = "é" * 300
    safe = sanitize(name)
    assert len(safe.encode()) <= MAX_NAME_BYTES and set(safe) == {"é"}
    assert len(cell_file_name(name, 123456).encode()) < 255 - len(".x.99999.part.raw")


@given(st.text(min_size=0, max_size=400))
def test_no_name_leaves_the_root_nor_hides(tmp_path_factory, text):
    root = tmp_path_factory.getbasetemp() / "outputs"
    folder = job_folder_name(text, text)
    path = inside(root, folder, cell_file_name(text, 7))
    assert path.parent.parent == root.resolve()
    assert not folder.startswith(".") and "/" not in folder and "\x00" not in folder
    assert len(path.name.encode()) < 255


def test_inside_refuses_escapes(tmp_path):
    for bad in ("..", "../x", "/etc", "a/../.."):
        with pytest.raises(ValueError):
            inside(tmp_path, bad)


def test_the_folder_follows_the_settings(tmp_path):
    settings = load_settings(env={}, data_dir=tmp_path / "data")
    assert outputs_root(settings) == tmp_path / "data" / "outputs"
    assert outputs_root(settings, tmp_path / "elsewhere") == tmp_path / "elsewhere"
    assert job_folder_name("gt", "0123456789abcdef") == "gt-01234567"


def test_a_commit_is_a_rename_and_discard_keeps_other_cells(tmp_path):
    out = CellOutput(tmp_path / "job", "gt_3.tif", attempt=5)
    out.prepare()
    assert out.part.name == ".gt_3.tif.5.part"
    out.part.write_bytes(b"whole")
    (out.folder / ".gt_3.tif.4.part.raw").write_bytes(b"older attempt")
    (out.folder / ".gt_31.tif.1.part").write_bytes(b"cell 31")
    assert out.commit() == 5
    assert out.final.read_bytes() == b"whole" and not out.part.exists()
    out.discard()
    assert sorted(os.listdir(out.folder)) == [".gt_31.tif.1.part", "gt_3.tif"]
    assert remove_stale_temporaries(out.folder) == 1
    assert os.listdir(out.folder) == ["gt_3.tif"]


def test_disk_full_is_recognised():
    assert disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert disk_full(RuntimeError("TIFFAppendToStrip: Write error: No space left on device"))
    assert not disk_full(OSError(errno.EACCES, "Permission denied"))
