"""``hvae data download``: fetches a data set's zip when asked, unpacks it whole or not at all, and
says where it is and under which license. Served here from a local HTTP server (a mirror, --url):
the real addresses need the internet, which the tests do not use."""

from __future__ import annotations

import functools
import http.server
import threading
import zipfile
from pathlib import Path

import pytest

from clihelp import invoke, one_line_error
from hvae.data import DEMO_DIR

FILES = ["info.csv", "drummer1/session1/2_funk_80_beat_4-4.mid", "drummer1/session3/9_rock_135_beat_4-4.mid"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A local web server for a folder; yields (folder, base URL)."""
    root = tmp_path_factory.mktemp("served")
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # the tests read the command's stderr
            pass

    handler = functools.partial(Quiet, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def groove_zip(path: Path, top: str = "groove") -> None:
    with zipfile.ZipFile(path, "w") as zipped:
        for name in FILES:
            zipped.write(DEMO_DIR / name, f"{top}/{name}")


def test_download_unpacks_the_data_set_and_says_its_license(server, tmp_path):
    root, base = server
    groove_zip(root / "groove.zip")
    result = invoke("data", "download", "groove", "--url", f"{base}/groove.zip", "--out", tmp_path, "--no-progress")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(tmp_path / "groove")
    assert "License: Groove MIDI Dataset v1.0.0" in result.stderr and "CC BY 4.0" in result.stderr
    for name in FILES:
        assert (tmp_path / "groove" / name).read_bytes() == (DEMO_DIR / name).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["groove"]  # no archive or unpacking folder left
    prepared = invoke("data", "prepare", "-c", "drums", "--data", tmp_path / "groove", "--out", tmp_path / "c",
                      "--no-progress")
    assert prepared.exit_code == 0, prepared.output
    again = invoke("data", "download", "groove", "--url", f"{base}/nothing-here.zip", "--out", tmp_path)
    assert again.exit_code == 0 and again.stdout.strip() == str(tmp_path / "groove")  # there already: kept


@pytest.mark.parametrize("served, message", [
    (None, "Could not download groove from"),
    (b"this is not a zip", "is not a zip archive; nothing was unpacked"),
    ("wrong-top", "has no groove/ folder (it holds wrong-top); nothing was kept"),
])
def test_a_failed_download_is_one_line_and_leaves_nothing(server, tmp_path, served, message):
    root, base = server
    name = f"case-{abs(hash(str(served)))}.zip"
    if isinstance(served, bytes):
        (root / name).write_bytes(served)
    elif served:
        groove_zip(root / name, top=served)
    error = one_line_error(invoke("data", "download", "groove", "--url", f"{base}/{name}", "--out", tmp_path,
                                  "--no-progress"))
    assert message in error
    assert not any(tmp_path.iterdir())
