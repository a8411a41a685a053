"""Write a reference TensorFlow checkpoint as a magenta.js checkpoint folder, the way magenta.js's own checkpoint
converter does (magenta-js scripts/checkpoint_converter.py: every non-scalar variable but global_step, float32,
through tensorflowjs's ``write_weights`` in 4 MB shards), with the ``config.json`` magenta.js's hosted
``mel_chords`` checkpoint has: a MelodyConverter of 32 steps over pitches 21-108 and a TriadChordEncoder.

Runs in the reference's environment with tensorflowjs's weight writer on the path (its package needs tf_keras
to import whole, so only its weight modules are loaded; ``pip install --no-deps --target /tmp/tfjs
tensorflowjs==4.22.0``):

    /tmp/refenv/bin/python experiments/reference_js_folder.py --tfjs /tmp/tfjs \\
        --checkpoint tests/data/reference/mel_chords_2bar/tf/model.ckpt --out tests/data/reference/mel_chords_2bar/js
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import tensorflow as tf

MEL_CHORDS_CONFIG = {"type": "MusicVAE",
                     "dataConverter": {"type": "MelodyConverter", "args": {"numSteps": 32, "minPitch": 21,
                                                                          "maxPitch": 108}},
                     "chordEncoder": "TriadChordEncoder"}


def weight_writer(tfjs: Path):
    """tensorflowjs's ``write_weights`` without importing the rest of its package."""
    package = types.ModuleType("tensorflowjs")
    package.__path__ = [str(tfjs / "tensorflowjs")]
    sys.modules["tensorflowjs"] = package
    from tensorflowjs.write_weights import write_weights

    return write_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tfjs", type=Path, required=True, help="folder holding the tensorflowjs package")
    parser.add_argument("--checkpoint", required=True, help="the TensorFlow checkpoint prefix (…/model.ckpt)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    write_weights = weight_writer(args.tfjs)
    reader = tf.compat.v1.train.NewCheckpointReader(args.checkpoint)
    entries = [{"name": name, "data": reader.get_tensor(name)}
               for name, shape in sorted(reader.get_variable_to_shape_map().items())
               if name != "global_step" and shape]
    args.out.mkdir(parents=True, exist_ok=True)
    write_weights([entries], str(args.out), write_manifest=True, shard_size_bytes=4 * 1024 * 1024)
    (args.out / "config.json").write_text(json.dumps(MEL_CHORDS_CONFIG))
    print(f"written {args.out}: {len(entries)} variables")


if __name__ == "__main__":
    main()
