"""The manifest that commits a checkpoint or a data cache: its own checksum, and when a folder fsync may fail."""

from __future__ import annotations

import errno
import json
import os

import pytest

from hvae import manifest


def test_a_committed_manifest_carries_its_own_checksum_and_an_edit_breaks_it(tmp_path):
    written = manifest.commit(tmp_path, "m.json", {"files": {"a": manifest.file_entry(b"abc")}}, indent=1)
    read = manifest.load(tmp_path / "m.json", 1 << 20)
    assert read == written and manifest.is_intact(read) and manifest.is_file_entry(read["files"]["a"])
    read["files"]["a"]["bytes"] = 4
    assert not manifest.is_intact(read)


@pytest.mark.parametrize("code", [errno.EINVAL, errno.ENOTSUP])
def test_a_file_system_that_cannot_fsync_folders_is_passed_over(tmp_path, monkeypatch, code):
    def refuse(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", refuse)
    manifest.fsync_folder(tmp_path)


def test_a_folder_fsync_that_fails_to_write_raises(tmp_path, monkeypatch):
    def fail(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError) as raised:
        manifest.fsync_folder(tmp_path)
    assert raised.value.errno == errno.EIO


def test_an_unreadable_manifest_raises_one_of_the_read_errors(tmp_path):
    (tmp_path / "m.json").write_bytes(b"\xff{")
    with pytest.raises(manifest.READ_ERRORS):
        manifest.load(tmp_path / "m.json", 1 << 20)
    (tmp_path / "big.json").write_text(json.dumps({"a": "x" * 100}))
    with pytest.raises(manifest.READ_ERRORS):
        manifest.load(tmp_path / "big.json", 10)
