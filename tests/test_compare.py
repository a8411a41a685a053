"""``hvae compare``: the experiment matrix in one command.

Spec: every combination (presets, or the cross product of converters, decoders and losses) trains on the
same data with the same budget and is evaluated on the same split; combinations whose loss does not fit
are listed with the reason and not trained unless --force (or a preset that forces them, like the
report's hier-groove-4bar); the results are written as results.md, results.csv, loss_curves.png, a
picture of every combination's reconstruction of the same window and a report.html linking each run's
own report.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from hvae.rundir import RunDir
from clihelp import invoke, one_line_error

# Every combination shrunk to 32-unit LSTMs and batches of 32 on one thread; no audio: runs of seconds.
TINY = ["-m", "z_size=16", "-m", "encoder.rnn_sizes=32", "-m", "decoder.rnn_sizes=32", "--batch-size", "32",
        "--threads", "1", "--no-audio", "--no-progress", "--quality-samples", "32"]
REPORT_PRESETS = ("hier-groove-4bar", "groovae_4bar", "hier-drums-4bar")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def report_matrix(tmp_path_factory, cache):
    """The report's three 4-bar drum combinations, 12 steps each, on the demo subset."""
    out = tmp_path_factory.mktemp("compare") / "matrix"
    args = [a for preset in REPORT_PRESETS for a in ("--preset", preset)]
    result = invoke("compare", *args, "--steps", "12", "--cache", str(cache), "--out", str(out), *TINY)
    assert result.exit_code == 0, result.output
    return out, result


def csv_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_each_combination_trains_the_same_budget_on_the_same_data(report_matrix):
    out, _ = report_matrix
    configs = [json.loads((out / "runs" / name / "config.json").read_text()) for name in REPORT_PRESETS]
    assert [c["train"]["steps"] for c in configs] == [12, 12, 12]
    assert {c["train"]["batch_size"] for c in configs} == {32} and {c["train"]["seed"] for c in configs} == {0}
    assert len({c["data_dir"] for c in configs}) == 1
    assert [(c["converter"], c["model"]["decoder"], c["model"]["loss"], c["force"]) for c in configs] == [
        ("groove", "hierarchical", "categorical", True), ("groove", "groove", "groove", False),
        ("drums", "hierarchical", "categorical", False)]


def test_results_csv_has_a_row_of_numbers_per_combination(report_matrix):
    out, _ = report_matrix
    rows = {row["name"]: row for row in csv_rows(out)}
    assert list(rows) == list(REPORT_PRESETS)
    for row in rows.values():
        assert (row["steps"], row["split"]) == ("12", "test")
        assert float(row["train_loss"]) > 0 and float(row["kl_bits"]) >= 0 and int(row["windows"]) > 0
        assert 0 <= float(row["sampled_hit_f1"]) <= 1  # the metric every drum combination shares
    assert float(rows["hier-drums-4bar"]["sampled_accuracy"]) >= 0
    assert rows["groovae_4bar"]["sampled_accuracy"] == ""  # groove outputs have no accuracy
    assert float(rows["groovae_4bar"]["tf_hit_recall"]) >= 0
    assert int(rows["hier-drums-4bar"]["train_windows"]) > int(rows["groovae_4bar"]["train_windows"])
    for row in rows.values():  # the sample quality of 32 prior samples (TINY's --quality-samples), and the ceiling
        assert int(row["examples_seen"]) == 12 * 32
        assert 0 <= float(row["quality_mean"]) <= 1 and 0 < float(row["ceiling_mean"]) <= 1
        assert 0 <= float(row["quality_hits_per_bar"]) <= 1
    assert 0 <= float(rows["hier-drums-4bar"]["plausible_share"]) <= 1
    assert 0 <= float(rows["groovae_4bar"]["quality_microtiming"]) <= 1  # groove outputs: timing measured too


def test_results_md_says_why_window_counts_differ_and_gives_each_runs_sample_overlap(report_matrix):
    out, _ = report_matrix
    text = (out / "results.md").read_text()
    assert "Training windows differ by converter (drums: " in text and "compare examples seen" in text
    header = next(line for line in text.splitlines() if line.startswith("| combination"))
    assert "examples seen" in header and "sample overlap of ceiling" in header and "plausible draws" in header
    row = next(line for line in text.splitlines() if line.startswith("| hier-drums-4bar |"))
    assert " of 0." in row  # "0.41 of 0.87": the mean overlap beside its ceiling


def test_results_md_is_a_markdown_table_with_the_forced_run_marked(report_matrix):
    out, result = report_matrix
    text = (out / "results.md").read_text()
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 3 and table[1].startswith("|---|---|")
    assert len({line.count("|") for line in table}) == 1
    forced = next(line for line in table if line.startswith("| hier-groove-4bar |"))
    assert "groove → hierarchical → categorical (forced)" in forced
    assert text in result.output  # the table is printed too


def test_loss_curves_come_from_each_runs_metrics(report_matrix):
    out, _ = report_matrix
    assert (out / "loss_curves.png").read_bytes().startswith(PNG_MAGIC)
    for name in REPORT_PRESETS:
        steps = [r["step"] for r in RunDir(out / "runs" / name).metrics() if r["split"] == "train"]
        assert steps[0] == 1 and steps[-1] == 12


def test_report_html_links_every_runs_report_and_shows_the_pictures(report_matrix):
    out, _ = report_matrix
    page = (out / "report.html").read_text()
    for name in REPORT_PRESETS:
        assert f'href="runs/{name}/report/index.html"' in page
        assert (out / "runs" / name / "report" / "index.html").is_file()
    assert 'src="loss_curves.png"' in page and 'src="same_input.png"' in page
    assert (out / "same_input.png").read_bytes().startswith(PNG_MAGIC)


def chromium() -> str | None:
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


@pytest.mark.skipif(chromium() is None, reason="no chromium binary (Debian: apt-get install chromium)")
def test_headless_chromium_loads_every_image_of_the_comparison(report_matrix):
    out, _ = report_matrix
    probe = out / "probe.html"
    script = ("<script>window.addEventListener('load', () => { const i = [...document.images]; "
              "document.body.insertAdjacentHTML('beforeend', `<pre>IMAGES ${i.length} LOADED "
              "${i.filter(x => x.complete && x.naturalWidth > 0).length}</pre>`); });</script>")
    probe.write_text((out / "report.html").read_text().replace("</body>", script + "</body>"))
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                              "--disable-background-networking", "--disable-component-update", "--disable-sync",
                              "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
                              "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    probe.unlink()
    found = re.search(r"IMAGES (\d+) LOADED (\d+)", dom.stdout)
    assert found and found[1] == found[2] == "2", dom.stdout[-500:]


def test_a_cross_product_lists_what_does_not_fit_and_trains_the_rest(tmp_path, cache):
    out = tmp_path / "grid"
    result = invoke("compare", "-c", "drums", "-c", "groove", "--decoder", "hierarchical", "--loss", "categorical",
                    "--loss", "groove", "--steps", "2", "--cache", str(cache), "--out", str(out), *TINY)
    assert result.exit_code == 0, result.output
    assert "Refused drums-hierarchical-groove: Loss 'groove' does not fit converter 'drums'" in result.stderr
    assert ("Refused groove-hierarchical-categorical: Loss 'categorical' does not fit converter 'groove'"
            in result.stderr)
    assert [row["name"] for row in csv_rows(out)] == ["drums-hierarchical-categorical", "groove-hierarchical-groove"]
    text = (out / "results.md").read_text()
    refused = text[text.index("Refused (not trained; --force trains them):"):]
    assert "- groove-hierarchical-categorical: Loss 'categorical' does not fit converter 'groove'" in refused
    assert "Softmax cross-entropy over 27 values" in refused
    assert "groove-hierarchical-categorical" in (out / "report.html").read_text()


def test_force_trains_a_combination_that_does_not_fit(tmp_path, cache):
    out = tmp_path / "forced"
    result = invoke("compare", "-c", "groove", "--decoder", "hierarchical", "--loss", "categorical", "--force",
                    "--steps", "2", "--cache", str(cache), "--out", str(out), *TINY)
    assert result.exit_code == 0, result.output
    (row,) = csv_rows(out)
    assert (row["name"], row["forced"], row["steps"]) == ("groove-hierarchical-categorical", "True", "2")


def test_a_time_budget_stops_each_combination_at_its_deadline(tmp_path, cache):
    out = tmp_path / "timed"
    result = invoke("compare", "--preset", "hier-drums-4bar", "--minutes", "0.05", "--cache", str(cache),
                    "--out", str(out), *TINY)
    assert result.exit_code == 0, result.output
    (row,) = csv_rows(out)
    config = json.loads((out / "runs" / "hier-drums-4bar" / "config.json").read_text())
    assert config["train"]["minutes"] == 0.05
    assert 1 <= int(row["steps"]) < config["train"]["steps"]  # stopped by the clock, not the step count
    assert int(row["examples_seen"]) == int(row["steps"]) * int(row["batch_size"])
    checkpoints = sorted((out / "runs" / "hier-drums-4bar" / "checkpoints").iterdir())
    assert checkpoints[-1].name == f"step-{int(row['steps']):08d}"
    assert "0.05 minutes" in (out / "results.md").read_text()


def test_the_budget_is_required(tmp_path):
    message = one_line_error(invoke("compare", "--preset", "demo", "--out", str(tmp_path)))
    assert "--steps N or --minutes M" in message


def test_steps_and_minutes_together_are_refused(tmp_path):
    message = one_line_error(invoke("compare", "--preset", "demo", "--steps", "2", "--minutes", "1",
                                    "--out", str(tmp_path)))
    assert "--steps N or --minutes M" in message


def test_a_converter_option_no_converter_has_is_a_one_line_error(tmp_path):
    message = one_line_error(invoke("compare", "-c", "drums", "-c", "groove", "-o", "colour=red", "--steps", "1",
                                    "--out", str(tmp_path)))
    assert message == "Error: Converter option 'colour=red': none of the converters compared (drums, groove) has an " \
                      "option 'colour'."


def test_when_every_combination_is_refused_nothing_trains(tmp_path):
    result = invoke("compare", "-c", "groove", "--loss", "categorical", "--steps", "1", "--out", str(tmp_path / "o"))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == "Error: Nothing to train: every combination was refused (--force " \
                                             "trains them)."
    assert not (tmp_path / "o").exists()


def test_a_run_still_learning_steadily_is_marked_too_short_to_judge_and_a_line_says_so(tmp_path, cache):
    from hvae.compare import QUARTER_LINES, SETTLED, late_fall

    out = tmp_path / "short"
    result = invoke("compare", "-p", "demo", "-p", "hier-drums-4bar", "--steps", "60", "--log-every", "5",
                    "--cache", str(cache), "--out", str(out), *TINY)
    assert result.exit_code == 0, result.output
    shares = {}
    for name in ("demo", "hier-drums-4bar"):
        lines = [r for r in RunDir(out / "runs" / name).metrics() if r["split"] == "train"]
        shares[name] = late_fall(lines, 60)
    assert shares["demo"] < SETTLED < shares["hier-drums-4bar"]  # demo's faster learning rate levels off by then
    rows = {row["name"]: row for row in csv_rows(out)}
    assert (rows["demo"]["too_short"], rows["hier-drums-4bar"]["too_short"]) == ("False", "True")
    assert float(rows["hier-drums-4bar"]["late_fall"]) == pytest.approx(shares["hier-drums-4bar"])
    text = (out / "results.md").read_text()
    table = [line for line in text.splitlines() if line.startswith("|")]
    above = text.split(table[0])[0].strip().splitlines()[-1]
    assert above.startswith("**1 of 2 runs marked (too short). Too short to judge: more than 10% of the training")
    assert f"| {shares['hier-drums-4bar']:.0%} (too short) |" in table[3] and f"| {shares['demo']:.0%} |" in table[2]
    assert "<b>1 of 2 runs marked (too short). Too short to judge: more than 10%" in (out / "report.html").read_text()
    help_text = " ".join(invoke("compare", "--help").output.split())
    assert f"more than {SETTLED:.0%} of its training loss's fall" in help_text
    assert f"fewer than {QUARTER_LINES} lines in either quarter" in help_text


def test_a_run_that_logged_too_few_lines_to_show_its_trend_is_marked_too(report_matrix):
    out, _ = report_matrix  # 12 steps, a line every 10: none in the third quarter
    text = (out / "results.md").read_text()
    assert "**3 of 3 runs marked (too short)." in text
    assert all(row["too_short"] == "True" and row["late_fall"] == "" for row in csv_rows(out))
    assert text.count("| – (too few lines) |") == 3
