"""Option types the commands share (numbers checked to be finite and in range before any work), and the
options several commands take."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click

from hvae.arguments import MAX_QPM, MIN_QPM
from hvae.data import SPLITS
from hvae.music import DEFAULT_QPM
from hvae.pretrained import shipped_model, shipped_models
from hvae.rundir import MAX_MINUTES, MAX_THREADS



class FiniteRange(click.FloatRange):
    """A ``click.FloatRange`` that also refuses ``nan`` and ``inf`` (which compare as in range)."""

    name = "finite float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


QPM = FiniteRange(min=MIN_QPM, max=MAX_QPM)  # a tempo MIDI can store, in quarter notes per minute
TEMPERATURE = FiniteRange(min=0, min_open=True)  # a sampling temperature
GREEDY_OR_TEMPERATURE = FiniteRange(min=0)  # 0: greedy decoding
SEED = click.IntRange(min=0, max=2 ** 64 - 1)  # what torch's and NumPy's generators take
THREADS = click.IntRange(min=1, max=MAX_THREADS)  # CPU threads torch may use
MAX_QUALITY_SAMPLES = 16_384  # prior samples for the sample quality (their features are held in memory)
MINUTES = FiniteRange(min=0, min_open=True, max=MAX_MINUTES)  # a training call's wall-clock budget
# --chords of the commands that draw from a chord-conditioned model (cat-mel_2bar_med_chords)
CHORDS = click.option("--chords", metavar="'C G Am F'", default=None,
                      help="For a model conditioned on chords: the progression to play over, chord symbols spread "
                           "evenly over the window as magenta.js spreads them (four over 2 bars: half a bar each); a "
                           "multi-instrument window plays over one chord.")


class RunOrModel(click.ParamType):
    """A run directory, a checkpoint directory or a file in one (that exists), or the name of a model in the
    box (``hvae models``); given as a path, which :func:`hvae.rundir.open_run` resolves."""

    name = "run"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = Path(value)
        if path.exists() or shipped_model(value) is not None:
            return path
        names = ", ".join(m.name for m in shipped_models())
        self.fail(f"{str(value)!r}: no such run, checkpoint or model in the box"
                  f"{f' ({names}; hvae models describes them)' if names else ''}.", param, ctx)


RUN = RunOrModel()


def split_option(default: str):
    return click.option("--split", type=click.Choice(SPLITS), default=default, show_default=True,
                        help="The data split to evaluate on.")


def data_option(what: str):
    return click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
                        default=None, help=f"Folder of MIDI files {what} Default: the run's own data.")


def qpm_option():
    return click.option("--qpm", type=QPM, default=DEFAULT_QPM, show_default=True,
                        help="Tempo, in quarter notes per minute, at which timing errors are turned into ms (and "
                             "MIDI is written).")


def device_option():
    return click.option("--device", "-d", metavar="DEVICE", default="auto", show_default=True,
                        help="auto (CUDA when there is one), cpu, cuda, cuda:N or mps (Apple silicon).")


def progress_option():
    return click.option("--progress/--no-progress", default=True, show_default=True,
                        help="Show progress bars on stderr.")
