"""``hvae report RUN_DIR``: one run's HTML page, and the pictures it is made of.

Spec: the page shows the evaluation (as ``hvae evaluate``), the loss curves, samples, reconstructions and
an interpolation as piano-roll PNGs with drum lanes named; it links the MIDI of each and plays rendered
WAVs where fluidsynth and a General MIDI soundfont are installed, with a note in the page where they are
not; every link resolves; and the page looks right in a real browser (headless Chromium loads every image).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import miditoolkit
import pytest
from click.testing import CliRunner

import hvae
from hvae.cli import main
from hvae.data import DEMO_DIR
from hvae.report.audio import find_renderer
from hvae.report.curves import curves_figure, plot_curves
from hvae.report.pianoroll import Panel, lanes_of, plot_rolls, roll_figure
from hvae.rundir import RunDir

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run")
# Appended to a copy of the page: once everything has loaded, write how many images decoded into the DOM.
IMAGE_PROBE = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute("src"));
  const marker = document.createElement("pre");
  marker.id = "image-probe";
  marker.textContent = `IMAGES ${images.length} BROKEN ${broken.length} [${broken.join(",")}]`;
  document.body.appendChild(marker);
});
</script>"""


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


class Page(HTMLParser):
    """The parts of a page the tests look at: image sources, links, audio sources and the text."""

    def __init__(self, text: str):
        super().__init__()
        self.images, self.links, self.audio, self.text = [], [], [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "a":
            self.links.append(attrs["href"])
        elif tag == "audio":
            self.audio.append(attrs["src"])

    def handle_data(self, data):
        self.text.append(data)

    @property
    def words(self) -> str:
        return " ".join(" ".join(self.text).split())


def target(page: Path, src: str) -> Path:
    return page.parent / unquote(src)


@pytest.fixture(scope="module")
def report(trained_drums) -> tuple[Path, Page]:
    result = invoke("report", str(trained_drums), "--samples", "3", "--no-progress")
    assert result.exit_code == 0, result.output
    page = Path(result.stdout.strip())
    return page, Page(page.read_text(encoding="utf-8"))


def test_the_report_is_written_into_the_run_directory(report, trained_drums):
    page, _ = report
    assert page == trained_drums / "report" / "index.html"


def test_every_picture_is_a_png_in_the_report_folder(report):
    page, parsed = report
    names = {Path(unquote(src)).name for src in parsed.images}
    assert {"loss_curves.png", "samples.png", "reconstruction-1.png", "interpolation.png"} <= names
    for src in parsed.images:
        assert target(page, src).read_bytes().startswith(PNG_MAGIC), src


def test_every_link_resolves_and_the_midi_reads_back(report):
    page, parsed = report
    midi = [href for href in parsed.links if href.endswith(".mid")]
    assert len(midi) == 3 + 3 * 2 + 1  # samples, reconstructions (original and decoded), the interpolation
    for href in parsed.links:
        assert target(page, href).is_file(), href
    for href in midi:
        assert miditoolkit.MidiFile(str(target(page, href))).instruments[0].is_drum


def test_the_page_shows_the_same_metrics_as_evaluate(report, trained_drums):
    page, parsed = report
    shown = json.loads((page.parent / "metrics.json").read_text())
    evaluated = json.loads(invoke("evaluate", str(trained_drums), "--json", "--no-progress").stdout)
    assert shown == evaluated
    assert f"{shown['sampled']['accuracy']:.4g}" in parsed.words
    assert "Reconstruction on the test split" in parsed.words and "teacher-forced" in parsed.words


@pytest.mark.skipif(find_renderer()[0] is None, reason=find_renderer()[1])
def test_with_fluidsynth_every_midi_file_has_a_wav_player(report):
    page, parsed = report
    assert len(parsed.audio) == len([href for href in parsed.links if href.endswith(".mid")])
    for src in parsed.audio:
        data = target(page, src).read_bytes()
        assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and len(data) > 10_000, src
    assert "Audio rendered by fluidsynth with" in parsed.words


@pytest.fixture
def run_copy(trained_drums, tmp_path) -> Path:
    """A copy of the trained run, to report on without touching the shared one's report."""
    return Path(shutil.copytree(trained_drums, tmp_path / "run"))


def test_without_fluidsynth_the_page_says_so_and_has_no_players(run_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no fluidsynth on it
    result = invoke("report", str(run_copy), "--samples", "1", "--reconstructions", "1", "--no-progress")
    assert result.exit_code == 0, result.output
    parsed = Page(Path(result.stdout.strip()).read_text(encoding="utf-8"))
    assert parsed.audio == [] and "Audio is not rendered: fluidsynth is not installed" in parsed.words


@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="fluidsynth is not installed")
def test_without_a_soundfont_the_page_says_where_it_looked(run_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("HVAE_SOUNDFONT", str(tmp_path / "missing.sf2"))
    result = invoke("report", str(run_copy), "--samples", "1", "--reconstructions", "0", "--no-progress")
    assert result.exit_code == 0, result.output
    parsed = Page(Path(result.stdout.strip()).read_text(encoding="utf-8"))
    assert parsed.audio == []
    assert f"no General MIDI soundfont found (looked for {tmp_path / 'missing.sf2'}" in parsed.words


def test_a_report_written_again_keeps_no_files_of_the_last_one(run_copy):
    for samples in ("3", "1"):
        result = invoke("report", str(run_copy), "--samples", samples, "--reconstructions", "0", "--no-audio",
                        "--no-progress")
        assert result.exit_code == 0, result.output
    midi = sorted(p.name for p in (run_copy / "report" / "midi").iterdir())
    assert len([name for name in midi if "_sample_" in name]) == 1
    assert not (run_copy / "report" / "audio").exists()


def test_a_folder_that_is_not_a_run_is_a_one_line_error(tmp_path):
    result = invoke("report", str(tmp_path))
    assert result.exit_code == 1 and result.output.strip().count("\n") == 0
    assert result.output.startswith(f"Error: No checkpoint in {tmp_path}")


def chromium() -> str | None:
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def loaded_images(page: Path) -> tuple[int, int]:
    """How many images the page has, and how many of them a headless Chromium could not load."""
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", IMAGE_PROBE + "</body>"), encoding="utf-8")
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000",
                              "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    probe.unlink()
    found = re.search(r"IMAGES (\d+) BROKEN (\d+)", dom.stdout)
    assert found, dom.stderr[-2000:]
    return int(found[1]), int(found[2])


@pytest.mark.skipif(chromium() is None, reason="no chromium binary (Debian: apt-get install chromium)")
def test_headless_chromium_loads_every_image_of_the_page(report):
    page, parsed = report
    assert loaded_images(page) == (len(parsed.images), 0)


@pytest.mark.skipif(chromium() is None, reason="no chromium binary (Debian: apt-get install chromium)")
def test_a_headless_chromium_screenshot_of_the_page_is_not_blank(report, tmp_path):
    page, _ = report
    shot = tmp_path / "page.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}",
                        "--window-size=1200,2000", page.as_uri()], capture_output=True, timeout=120)
    data = shot.read_bytes()
    assert data.startswith(PNG_MAGIC)
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1200, 2000)
    assert len(data) > 50_000  # a blank page compresses to a few kilobytes


def test_drum_lanes_are_the_converters_classes_kick_first():
    lanes = lanes_of(hvae.get_converter("groove"))
    assert lanes.names[:3] == ("kick", "snare", "closed hi-hat") and len(lanes.names) == 9
    assert lanes_of(hvae.get_converter("melody")) is None


def test_a_piano_roll_is_1200_pixels_wide_and_grows_with_its_panels(tmp_path):
    converter = hvae.get_converter("groove")
    window = converter.to_tensors(DEMO_DIR / "drummer1/session1/2_funk_80_beat_4-4.mid")[1]
    midi = converter.from_tensors(window.outputs)
    sizes = []
    for count in (1, 3):
        png = plot_rolls([Panel(f"roll {k}", midi, lanes_of(converter)) for k in range(count)],
                         tmp_path / f"roll{count}.png", quarters=16)
        data = png.read_bytes()
        sizes.append((int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")))
    assert sizes[0][0] == sizes[1][0] == 1200 and sizes[1][1] > 2 * sizes[0][1]


def test_loss_curves_are_drawn_from_metrics_jsonl(trained_drums, tmp_path):
    records = RunDir(trained_drums).metrics()
    assert {r["split"] for r in records} == {"train", "validation"}
    png = plot_curves({"a": records, "b": records[:2]}, tmp_path / "curves.png")
    assert png.read_bytes().startswith(PNG_MAGIC)


# --- what the pictures, sounds and notes show -------------------------------------------------------------------

FUNK = DEMO_DIR / "drummer1/session1/2_funk_80_beat_4-4.mid"


def rolls(converter_name: str, source: Path, **options):
    """The figure of one real window of ``source``, as the converter writes it back, and the MIDI."""
    converter = hvae.get_converter(converter_name, **options)
    midi = converter.from_tensors(converter.to_tensors(source)[0].outputs)
    return roll_figure([Panel("window", midi, lanes_of(converter))], quarters=16), midi


def test_a_roll_whose_notes_share_one_velocity_has_no_colour_bar_but_says_which():
    figure, _ = rolls("drums", FUNK, slice_bars=4)  # the drums converter writes velocity 80 throughout
    assert len(figure.axes) == 1
    assert [t.get_text() for t in figure.texts] == ["velocity\n80\nthroughout"]


def test_a_roll_with_varied_velocities_has_a_colour_bar():
    figure, _ = rolls("groove", FUNK)
    assert len(figure.axes) == 2 and figure.axes[1].get_ylabel() == "velocity"


def test_a_melody_roll_spans_the_pitches_it_uses(maestro_file):
    figure, midi = rolls("melody", maestro_file, slice_bars=4, skip_polyphony=False)
    pitches = [n.pitch for n in midi.instruments[0].notes]
    assert figure.axes[0].get_ylim() == (min(pitches) - 2.5, max(pitches) + 2.5)
    assert figure.get_size_inches()[1] * figure.dpi < 400  # a 4-bar melody: a few hundred pixels, not 1,000


def test_a_short_runs_loss_axis_fits_the_steps_after_the_first_so_labelled(trained_humanizer):
    records = RunDir(trained_humanizer).metrics()  # 300 steps, the loss falling fast at first
    loss_axis = curves_figure({"run": records}).axes[0]
    later = [r["loss"] for r in records if r["step"] > 15]
    low, high = loss_axis.get_ylim()
    assert low < min(later) and max(later) < high < records[0]["loss"]
    assert loss_axis.get_title(loc="right") == ("y axis zoomed in on the steps after the first 15, where the curve "
                                                "has settled; the first steps' values lie off the chart")


def test_the_legend_promises_validation_dots_only_where_there_are_some(trained_humanizer):
    records = RunDir(trained_humanizer).metrics()
    assert any(r["split"] == "validation" for r in records)
    legend = curves_figure({"run": records}).axes[0].get_legend()
    assert legend.get_title().get_text() == "lines: training; dots: validation"
    training = [r for r in records if r["split"] == "train"]
    legend = curves_figure({"run": training}).axes[0].get_legend()
    assert legend.get_title().get_text() == "lines: training" and [t.get_text() for t in legend.texts] == ["run"]


def test_an_axis_whose_first_steps_lie_in_the_range_of_the_rest_is_left_as_it_is(trained_drums):
    records = [r for r in RunDir(trained_drums).metrics() if r["step"] > 1]
    assert curves_figure({"run": records}).axes[0].get_title(loc="right") == ""


@pytest.mark.parametrize("args, note", [
    (("--samples", "0"), "No samples: --samples 0 was given."),
    (("--interpolation-steps", "0"), "No interpolation: --interpolation-steps 0 was given (an interpolation needs "
                                     "at least its 2 ends)."),
    (("--reconstructions", "1"), "No interpolation: it runs between the first and the last reconstructed window, "
                                 "and there is 1 (--reconstructions 2 or more, on a split of windows from 2 files "
                                 "or more)."),
    (("--reconstructions", "0"), "No reconstructions: --reconstructions 0 was given."),
])
def test_a_section_left_out_says_so_and_why(run_copy, args, note):
    result = invoke("report", str(run_copy), "--samples", "1", *args, "--no-audio", "--no-progress")
    assert result.exit_code == 0, result.output
    assert note in Page(Path(result.stdout.strip()).read_text(encoding="utf-8")).words


def wav_levels(path: Path) -> tuple[float, float, float]:
    """Seconds, peak and RMS (dBFS) of a 16-bit WAV."""
    import wave

    import numpy as np

    with wave.open(str(path), "rb") as f:
        rate, audio = f.getframerate(), np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16) / 32768.0
        seconds = f.getnframes() / rate
    return seconds, 20 * np.log10(np.abs(audio).max()), 20 * np.log10(np.sqrt(np.mean(audio ** 2)))


@pytest.mark.skipif(find_renderer()[0] is None, reason=find_renderer()[1])
def test_rendered_audio_is_loudness_normalised_and_ends_with_its_midi(report):
    import mido

    page, parsed = report
    for src in parsed.audio:
        wav = target(page, src)
        midi = next(p for p in (page.parent / "midi").iterdir() if p.stem == wav.stem)
        seconds, peak, rms = wav_levels(wav)
        assert seconds == pytest.approx(mido.MidiFile(midi).length + 0.5, abs=0.01), src
        assert peak <= -0.9 and (rms == pytest.approx(-18.0, abs=0.5) or peak >= -1.1), src


def screenshot(page: Path, shot: Path) -> bytes:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}",
                        "--window-size=1200,3000", "--virtual-time-budget=10000", page.as_uri()],
                       capture_output=True, timeout=120)
    return shot.read_bytes()


@pytest.mark.skipif(chromium() is None, reason="no chromium binary (Debian: apt-get install chromium)")
def test_a_melody_report_loads_every_image_in_headless_chromium_and_its_screenshot_is_not_blank(trained_melody,
                                                                                                tmp_path):
    result = invoke("report", str(trained_melody), "--split", "train", "--samples", "2", "--no-progress")
    assert result.exit_code == 0, result.output
    page = Path(result.stdout.strip())
    images, broken = loaded_images(page)
    assert images == len(Page(page.read_text(encoding="utf-8")).images) >= 4 and broken == 0
    data = screenshot(page, tmp_path / "melody-report.png")
    assert data.startswith(PNG_MAGIC) and len(data) > 50_000
    print(f"\nmelody report screenshot: {tmp_path / 'melody-report.png'}")


@pytest.mark.skipif(chromium() is None, reason="no chromium binary (Debian: apt-get install chromium)")
def test_a_drums_report_screenshot_shows_the_whole_page(report, tmp_path):
    page, _ = report
    data = screenshot(page, tmp_path / "drums-report.png")
    assert data.startswith(PNG_MAGIC) and len(data) > 50_000
    print(f"\ndrums report screenshot: {tmp_path / 'drums-report.png'}")


@pytest.mark.skipif(find_renderer()[0] is None, reason=find_renderer()[1])
def test_sample_wav_writes_a_preview_beside_each_midi_file(trained_drums, tmp_path):
    from hvae.report.audio import render_previews

    result = invoke("sample", str(trained_drums), "-n", "2", "--seed", "1", "--wav", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    printed = [Path(line) for line in result.stdout.splitlines()]
    midi, wavs = printed[:2], printed[2:]
    assert [p.suffix for p in midi] == [".mid", ".mid"] and wavs == [p.with_suffix(".wav") for p in midi]
    for wav in wavs:
        data = wav.read_bytes()
        assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and len(data) > 10_000
    assert sorted(tmp_path.iterdir()) == sorted(printed)  # nothing half-written left beside them
    assert render_previews(midi[:1]) == ([wavs[0]], "")


def test_sample_wav_without_fluidsynth_says_how_to_install_it_and_writes_the_midi(trained_drums, tmp_path,
                                                                                   monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no fluidsynth on it
    result = invoke("sample", str(trained_drums), "-n", "2", "--wav", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert result.stderr.strip().splitlines()[-1] == ("Audio is not rendered: fluidsynth is not installed (Debian: "
                                                      "apt-get install fluidsynth). The MIDI files are written.")
    assert [Path(line).suffix for line in result.stdout.splitlines()] == [".mid", ".mid"]
    assert sorted(p.suffix for p in (tmp_path / "out").iterdir()) == [".mid", ".mid"]
