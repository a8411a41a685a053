"""WAV files from MIDI, rendered by fluidsynth with a General MIDI soundfont, where both are installed.

The soundfont is ``$HVAE_SOUNDFONT`` when set, else the first of :data:`SOUNDFONTS` that exists
(Debian's ``fluid-soundfont-gm`` installs the first two).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

from hvae.errors import HvaeError

SOUNDFONTS = (
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    Path("/usr/share/sounds/sf2/default-GM.sf2"),
    Path("/usr/share/soundfonts/FluidR3_GM.sf2"),
    Path("/usr/share/soundfonts/default.sf2"),
)
SAMPLE_RATE = 22_050  # Hz: plenty for drums, half the size of CD rate
RENDER_TIMEOUT = 60.0  # seconds allowed for one file


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
        return wav


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
