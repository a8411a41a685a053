"""Every named output held to the run directory's rules (issue 24): ``compare --out`` and ``evaluate -o``
never clobber and never write through a link, and a report written into a run holds the run's lock."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from clihelp import invoke, one_line_error
from hvae.compare import Budget, run_grid, write_results
from hvae.errors import OutputExistsError
from hvae.report.run import ReportOptions, write_run_report
from hvae.rundir import RunDir
from hvae.runlock import RunInUseError


@pytest.fixture
def run_copy(trained_drums, tmp_path) -> Path:
    return Path(shutil.copytree(trained_drums, tmp_path / "run"))


# evaluate -o FILE

def test_evaluate_refuses_an_existing_output_file_before_any_work(trained_drums, tmp_path):
    (tmp_path / "metrics.json").write_text("mine")
    message = one_line_error(invoke("evaluate", trained_drums, "-o", tmp_path / "metrics.json", "--no-progress"))
    assert message.endswith("metrics.json exists: choose another --output, or --force to replace it.")
    assert (tmp_path / "metrics.json").read_text() == "mine"


def test_evaluate_never_writes_through_a_link_even_with_force(trained_drums, tmp_path):
    (tmp_path / "target").write_text("theirs")
    (tmp_path / "metrics.json").symlink_to(tmp_path / "target")
    message = one_line_error(invoke("evaluate", trained_drums, "-o", tmp_path / "metrics.json", "--force",
                                    "--no-progress"))
    assert "is not a plain file (hvae never writes through a link): choose another --output." in message
    assert (tmp_path / "target").read_text() == "theirs" and (tmp_path / "metrics.json").is_symlink()


def test_evaluate_force_replaces_a_plain_file(trained_drums, tmp_path):
    (tmp_path / "metrics.json").write_text("old")
    result = invoke("evaluate", trained_drums, "-o", tmp_path / "metrics.json", "--force", "--samples", "0",
                    "--no-progress")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "metrics.json").read_text().startswith("{")


# compare --out DIR

@pytest.mark.parametrize("theirs", ["results.md", "report.html", "loss_curves.png"])
def test_compare_refuses_an_out_holding_results_before_training(tmp_path, theirs):
    (tmp_path / "cmp").mkdir()
    (tmp_path / "cmp" / theirs).write_text("mine")
    message = one_line_error(invoke("compare", "--steps", "1", "--out", tmp_path / "cmp"))
    assert message.endswith("holds an hvae comparison: choose another --out, or --overwrite to replace it.")
    assert [p.name for p in (tmp_path / "cmp").iterdir()] == [theirs]
    assert (tmp_path / "cmp" / theirs).read_text() == "mine"


def test_compare_overwrite_refuses_a_folder_holding_anything_else(tmp_path):
    (tmp_path / "cmp").mkdir()
    (tmp_path / "cmp" / "notes.txt").write_text("mine")
    message = one_line_error(invoke("compare", "--steps", "1", "--overwrite", "--out", tmp_path / "cmp"))
    assert "is not an hvae comparison, so it is not replaced (it holds notes.txt)" in message


def test_the_python_api_refuses_the_same_in_its_own_words(tmp_path):
    (tmp_path / "cmp").mkdir()
    (tmp_path / "cmp" / "results.csv").write_text("mine")
    with pytest.raises(OutputExistsError, match=r"choose another out_dir=, or overwrite=True"):
        run_grid([], tmp_path / "cmp", Budget(steps=1))
    with pytest.raises(OutputExistsError, match="results.csv exists"):
        write_results(tmp_path / "cmp", [], [], Budget(steps=1), "test")
    (tmp_path / "cmp" / "results.csv").unlink()
    (tmp_path / "cmp" / "results.md").symlink_to(tmp_path / "elsewhere.md")
    with pytest.raises(OutputExistsError, match="never writes through a link"):
        write_results(tmp_path / "cmp", [], [], Budget(steps=1), "test", overwrite=True)
    assert not (tmp_path / "elsewhere.md").exists()


# report: under the run's lock, swapped in whole

def test_a_second_report_on_a_run_is_refused_in_one_line_and_the_first_is_kept(run_copy):
    first = invoke("report", run_copy, "--samples", "1", "--reconstructions", "0", "--no-audio", "--no-progress")
    assert first.exit_code == 0, first.output
    before = sorted(p.relative_to(run_copy) for p in (run_copy / "report").rglob("*"))
    with RunDir(run_copy).report_lock():  # as a report under way holds it
        message = one_line_error(invoke("report", run_copy, "--samples", "2", "--no-audio", "--no-progress"))
        with pytest.raises(RunInUseError):
            write_run_report(run_copy, ReportOptions(samples=2, audio=False), progress=False)
    assert "is in use by another hvae run (pid" in message
    assert sorted(p.relative_to(run_copy) for p in (run_copy / "report").rglob("*")) == before
    assert not list(run_copy.glob(".report.*"))


def test_a_report_is_written_while_a_training_holds_the_run(run_copy):
    with RunDir(run_copy).lock():  # as a training under way holds it
        result = invoke("report", run_copy, "--samples", "1", "--reconstructions", "0", "--no-audio", "--no-progress")
    assert result.exit_code == 0, result.output
    assert (run_copy / "report" / "index.html").is_file()


# Modes: what hvae creates is as shared as the umask allows, as other tools' files are

@pytest.fixture(params=[0o022, 0o002], ids=["umask022", "umask002"])
def umask(request):
    before = os.umask(request.param)
    yield request.param
    os.umask(before)


def test_what_train_sample_and_report_create_has_the_modes_the_umask_gives(tmp_path, umask):
    run, cache = tmp_path / "run", tmp_path / "cache"
    trained = invoke("train", "--preset", "hier-drums-4bar", "-m", "z_size=16", "-m", "encoder.rnn_sizes=32",
                     "-m", "decoder.rnn_sizes=32", "--batch-size", "32", "--threads", "1", "--no-progress",
                     "--steps", "4", "--cache", cache, "--out", run)
    assert trained.exit_code == 0, trained.output
    for args in (("sample", run, "-n", "2"), ("report", run, "-n", "1", "--quality-samples", "0", "--reconstructions",
                                               "2", "--no-audio", "--no-progress")):
        result = invoke(*args)
        assert result.exit_code == 0, result.output
    made = [p for p in (run, cache) for p in (p, *p.rglob("*"))]
    modes = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.lstat().st_mode) for p in made}
    expected = {name: (0o777 if (tmp_path / name).is_dir() else 0o666) & ~umask for name in modes}
    assert modes == expected
    assert {"run/samples", "run/report", "run/report/index.html", "cache/manifest.json"} <= set(modes)
    assert any(name.startswith("run/samples/") for name in modes) and \
        any(name.startswith("run/checkpoints/step-") and name.endswith(".safetensors") for name in modes)
