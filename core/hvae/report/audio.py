"""WAV files from MIDI, rendered by fluidsynth with a General MIDI soundfont, where both are installed.

The soundfont is ``$HVAE_SOUNDFONT`` when set, else the first of :data:`SOUNDFONTS` that exists
(Debian's ``fluid-soundfont-gm`` installs the first two).

fluidsynth renders quietly (its gain of 0.2 leaves a drum loop near -27 dBFS peak, -47 dBFS RMS) and goes
on for seconds of reverb after the last note; each WAV is cut :data:`RELEASE_SECONDS` after the MIDI
file's end and scaled to :data:`TARGET_RMS_DBFS` RMS, or less where the peak would pass
:data:`PEAK_DBFS`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import wave
from pathlib import Path
from typing import Sequence

import mido
import numpy as np

from hvae.errors import HvaeError

SOUNDFONTS = (
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    Path("/usr/share/sounds/sf2/default-GM.sf2"),
    Path("/usr/share/soundfonts/FluidR3_GM.sf2"),
    Path("/usr/share/soundfonts/default.sf2"),
)
SAMPLE_RATE = 22_050  # Hz: plenty for drums, half the size of CD rate
RENDER_TIMEOUT = 60.0  # seconds allowed for one file
RELEASE_SECONDS = 0.5  # kept after the MIDI file's end: the last notes' decay
TARGET_RMS_DBFS = -18.0  # loudness of a rendered file (RMS over the kept audio), dB below full scale
PEAK_DBFS = -1.0  # the highest peak a rendered file may reach
FULL_SCALE = 32767.0  # 16-bit samples


@dataclasses.dataclass(frozen=True)
class Renderer:
    """fluidsynth and the soundfont it plays MIDI with."""

    fluidsynth: str  # the executable
    soundfont: Path

    def render(self, midi: Path, wav: Path) -> Path:
        """Render ``midi`` to ``wav`` (16-bit stereo at SAMPLE_RATE); raises HvaeError when fluidsynth fails."""
        wav.parent.mkdir(parents=True, exist_ok=True)
        command = [self.fluidsynth, "-ni", "-q", "-F", str(wav), "-r", str(SAMPLE_RATE), str(self.soundfont), str(midi)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=RENDER_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise HvaeError(f"fluidsynth took more than {RENDER_TIMEOUT:g} s to render {midi}.") from None
        if done.returncode != 0 or not wav.is_file():
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise HvaeError(f"fluidsynth could not render {midi}: {detail[-1] if detail else 'no output'}.")
        tidy(wav, mido.MidiFile(midi).length + RELEASE_SECONDS)
        return wav


def tidy(wav: Path, seconds: float) -> None:
    """Cut the 16-bit WAV at ``wav`` to its first ``seconds`` and normalise its loudness (see the module)."""
    with wave.open(str(wav), "rb") as f:
        params, frames = f.getparams(), f.readframes(f.getnframes())
    audio = np.frombuffer(frames, dtype=np.int16).reshape(-1, params.nchannels)
    audio = audio[:int(round(seconds * params.framerate))].astype(np.float64)
    rms, peak = float(np.sqrt(np.mean(audio ** 2))) if audio.size else 0.0, float(np.abs(audio).max(initial=0.0))
    if peak > 0:
        gain = min(10 ** (TARGET_RMS_DBFS / 20) * FULL_SCALE / rms, 10 ** (PEAK_DBFS / 20) * FULL_SCALE / peak)
        audio = np.clip(np.round(audio * gain), -FULL_SCALE, FULL_SCALE)
    with wave.open(str(wav), "wb") as f:
        f.setparams(params)
        f.writeframes(audio.astype(np.int16).tobytes())


def find_renderer() -> tuple[Renderer | None, str]:
    """The renderer, or None, and a sentence saying which soundfont it uses or why there is none."""
    executable = shutil.which("fluidsynth")
    if executable is None:
        return None, "Audio is not rendered: fluidsynth is not installed (Debian: apt-get install fluidsynth)."
    configured = os.environ.get("HVAE_SOUNDFONT")
    candidates = [Path(configured).expanduser()] if configured else list(SOUNDFONTS)
    for soundfont in candidates:
        if soundfont.is_file():
            return Renderer(executable, soundfont), f"Audio rendered by fluidsynth with {soundfont}."
    looked = ", ".join(str(c) for c in candidates)
    return None, (f"Audio is not rendered: no General MIDI soundfont found (looked for {looked}; Debian: "
                  f"apt-get install fluid-soundfont-gm, or set HVAE_SOUNDFONT).")


def render_previews(midi_files: Sequence[Path]) -> tuple[list[Path], str]:
    """A WAV preview beside each of ``midi_files`` (the same name, ``.wav``), where fluidsynth and a soundfont
    are installed: the WAVs written, and a sentence on what was not (with how to install it), else ""."""
    renderer, said = find_renderer()
    if renderer is None:
        return [], f"{said} The MIDI files are written."
    wavs = []
    for midi in midi_files:
        building = midi.with_name(f".{midi.stem}.partial-{os.getpid()}.wav")  # fluidsynth reads the type from .wav
        try:
            os.replace(renderer.render(midi, building), midi.with_suffix(".wav"))
        finally:
            building.unlink(missing_ok=True)
        wavs.append(midi.with_suffix(".wav"))
    return wavs, ""
