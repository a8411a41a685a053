"""The latent-space tools from Python, with the models in the box: a notebook to run cell by cell.

    python examples/latent_tools.py BEAT.mid OTHER.mid THIRD.mid FOURTH.mid [--out latent-tools/]

BEAT.mid ... are 4/4 drum files (General MIDI drums on channel 10), e.g. from the Groove MIDI Dataset.
Every step writes DAW-ready MIDI files (and a piano-roll picture) into --out and prints their paths;
the same functions are behind the commands (`hvae transform`, `hvae similar`, `hvae interpolate
--grid`, `hvae mean`, `hvae drumify`, `hvae humanize --whole`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import hvae


def show(what: str, paths) -> None:
    print(f"\n# {what}")
    for path in paths:
        print(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("beats", nargs=4, type=Path, help="four drum MIDI files")
    parser.add_argument("--out", type=Path, default=Path("latent-tools"))
    args = parser.parse_args()
    a, b, c, d = args.beats
    out = args.out

    # %% 4-bar drum loops: a model in the box, by name
    drums = hvae.open_run("gmd-drums-4bar")

    # %% Attribute vectors (shipped with the model; hvae.attribute_vectors(run) makes a run's own):
    # the beat from sparser to denser, then with more hi-hat and less cymbal
    vectors = hvae.AttributeVectors.load(drums.dir.attributes_file)
    sweep = [{"density": scale} for scale in (-1.5, -0.75, 0.0, 0.75, 1.5)]
    done = hvae.transform_file(drums, vectors, a, sweep, out / "transform")
    show("density sweep (hits per bar: " + ", ".join(f"{m['density']:.1f}" for m in done.measured[1:]) + ")",
         done.midi)
    done = hvae.transform_file(drums, vectors, a, [{"hats": 1.0, "cymbals": -0.5}], out / "transform")
    show("more hats, fewer cymbals", done.midi)

    # %% Variations: the beat's code blended with prior draws (1.0 = the beat, 0.0 = a new one)
    show("similar", hvae.similar_file(drums, a, out / "similar", n=4, similarity=0.8, seed=0).midi)

    # %% Between beats: the midpoint of two, and Beat Blender's 5x5 grid between four corners
    show("mean", hvae.mean_file(drums, a, b, out / "mean").midi)
    show("grid", hvae.grid_files(drums, [a, b, c, d], out / "grid", size=5, seed=0).midi[-1:])

    # %% Any rhythm as drums: every note of the file is a tap (a bass line, a melody, taps on one key)
    show("drumify", hvae.drumify_file(hvae.open_run("gmd-drumify-2bar"), b, out / "drumify").midi)

    # %% A quantised beat of any length, played with a drummer's velocities and timing
    show("humanize", hvae.humanize_file(hvae.open_run("gmd-humanize-2bar"), c, out / "humanize", whole=True).midi)


if __name__ == "__main__":
    main()
