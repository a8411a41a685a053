"""``hvae reconstruct``, ``hvae humanize`` and ``hvae interpolate`` on the whole corpus of bad inputs.

Spec: given many files (or a folder), each bad one is named on one line with its reason and
skipped, the good ones are written, and the exit status is 0 when anything was written, 1 when
nothing was; given one bad file, the command fails with a one-line error naming it. Never a traceback.
(``hvae data prepare`` on the same corpus is in test_bad_midi.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from badmidi import BAD_INPUTS, write_bad_corpus
from hvae.data import DEMO_DIR
from clihelp import invoke

FUNK = DEMO_DIR / "drummer1/session1/2_funk_80_beat_4-4.mid"
UNREADABLE = [bad.name for bad in BAD_INPUTS if not bad.readable]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    return write_bad_corpus(tmp_path_factory.mktemp("bad-midi"))


def outcome_per_file(result, corpus: dict[str, Path]) -> dict[str, str]:
    """For each corpus input: "skipped" (named on a Skipped line) or "written" (its outputs printed)."""
    skipped = [line for line in result.stderr.splitlines() if line.startswith("Skipped: ")]
    written = [Path(line) for line in result.stdout.splitlines()]
    seen = {}
    for name, path in corpus.items():
        named = [line for line in skipped if line.startswith(f"Skipped: {path}:")]
        outputs = [out for out in written if out.name.startswith(path.stem + "-w")]
        assert len(named) + bool(outputs) == 1, (name, named, outputs)
        seen[name] = "skipped" if named else "written"
    assert len(skipped) == sum(v == "skipped" for v in seen.values())  # no other file skipped, none twice
    return seen


@pytest.mark.parametrize("command, model", [("reconstruct", "trained_drums"), ("humanize", "trained_humanizer")])
def test_every_bad_file_is_named_and_skipped_and_the_good_ones_are_written(command, model, corpus, tmp_path,
                                                                          request):
    run = request.getfixturevalue(model)
    result = invoke(command, run, *corpus.values(), FUNK, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    seen = outcome_per_file(result, corpus)
    assert all(seen[name] == "skipped" for name in UNREADABLE)
    assert seen["hundred-thousand-notes.mid"] == "written" and seen["no-notes.mid"] == "skipped"
    assert any(Path(line).name.startswith("2_funk_80_beat_4-4-w0") for line in result.stdout.splitlines())
    skipped = sum(v == "skipped" for v in seen.values())
    total = len(corpus) + 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"{command}: {total - skipped} of {total} files; {skipped} skipped (reasons above).")
    for line in result.stderr.splitlines():
        if line.startswith("Skipped: "):
            assert len(line) < 400, line


def test_a_folder_is_searched_and_nothing_usable_fails_with_exit_status_1(trained_drums, corpus, tmp_path):
    folder = tmp_path / "unusable"
    folder.mkdir()
    for name in ("empty.mid", "png-image.mid", "no-notes.mid", "waltz-3-4.mid"):
        (folder / name).write_bytes(corpus[name].read_bytes())
    result = invoke("reconstruct", trained_drums, folder, "--out", tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert sum(line.startswith("Skipped: ") for line in result.stderr.splitlines()) == 4
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: Nothing written: none of the 4 files could be used (reasons above).")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_files_of_one_name_in_two_folders_do_not_overwrite_each_other(trained_drums, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "beat.mid").write_bytes(FUNK.read_bytes())
    result = invoke("reconstruct", trained_drums, tmp_path / "a", tmp_path / "b", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    names = sorted(Path(line).name for line in result.stdout.splitlines())
    assert names == ["beat-2-w0-original.mid", "beat-2-w0-reconstruction.mid", "beat-2-w0-reconstruction.png",
                     "beat-w0-original.mid", "beat-w0-reconstruction.mid", "beat-w0-reconstruction.png"]


@pytest.mark.parametrize("name", sorted(bad.name for bad in BAD_INPUTS))
def test_interpolating_from_any_bad_file_is_a_one_line_error_or_works(name, trained_drums, corpus, tmp_path):
    result = invoke("interpolate", trained_drums, corpus[name], FUNK, "--steps", 2, "--out", tmp_path)
    assert "Traceback" not in result.output
    if result.exit_code == 0:
        assert name not in UNREADABLE
        return
    lines = result.output.strip().splitlines()
    assert result.exit_code in (1, 2), result.output  # 2: click refuses a directory or a missing path
    assert lines[-1].startswith("Error: "), result.output
    if result.exit_code == 1:
        assert len(lines) == 1 and str(corpus[name]) in lines[0], result.output
