"""Attribute vectors of the models in the box, and whether they work.

    python experiments/attribute_vectors.py --gmd ../shared/data/groove [--write] [--inputs 20] [--matrix 100]

For each model in the box: its attribute vectors on the GMD train split (``hvae attributes NAME --data GMD``);
with --write they go into the model's folder (core/hvae/pretrained/NAME/attributes.json), where
``hvae transform NAME`` finds them. Then, for gmd-drums-4bar, on windows of the GMD test split:

- the sweep: each of ``--inputs`` windows encoded, its density vector added at 7 scales from -1.5 to
  +1.5, decoded greedily; the Spearman correlation between scale and measured hits per bar, per input,
  averaged (and the same for every other attribute, which should move less);
- the attribute-change matrix (MusicVAE's paper, figure 6): ``--matrix`` windows, each vector added at
  +1; the change of every attribute's mean against the reconstructions' (no vector added), relative (as
  the paper) and in units of the attribute's own quartile spread.

Prints Markdown (docs/experiments/attribute-vectors.md holds a run of it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from hvae.attributes import attribute_vectors, measure_attributes
from hvae.pretrained import shipped_models
from hvae.rundir import open_run

SCALES = np.linspace(-1.5, 1.5, 7)
SWEPT = "gmd-drums-4bar"


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (ties share their mean rank); NaN where y is constant."""
    def ranks(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v))
        for value in np.unique(v):  # ties: their mean rank
            r[v == value] = r[v == value].mean()
        return r
    if np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(ranks(x), ranks(y))[0, 1])


def decode(model, mu: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model.decode(mu, temperature=0.0).float().numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gmd", type=Path, required=True)
    parser.add_argument("--write", action="store_true", help="save each model's vectors into its folder")
    parser.add_argument("--inputs", type=int, default=20)
    parser.add_argument("--matrix", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    for shipped in shipped_models():
        loaded = open_run(shipped.name)
        vectors = attribute_vectors(loaded, "train", args.gmd)
        print(f"\n{shipped.name}: {vectors.source}; vectors {', '.join(vectors.vectors)}")
        if args.write:
            print(f"written: {vectors.save(loaded.dir.attributes_file)}")
        if shipped.name == SWEPT:
            experiment(loaded, vectors, args)


def experiment(loaded, vectors, args) -> None:
    model, converter = loaded.model, loaded.converter
    windows, _ = loaded.windows("test", args.gmd, progress=False)
    tensors = windows.as_tensors()
    rng = np.random.default_rng(args.seed)
    chosen = rng.choice(len(windows), size=max(args.inputs, args.matrix), replace=False)
    with torch.no_grad():
        mu, _ = model.encode(tensors["inputs"][chosen], tensors["lengths"][chosen])
    names = list(vectors.vectors)

    # The sweep: each attribute's vector at 7 scales, per input the rank correlation of every attribute.
    print(f"\nSweeps over {args.inputs} test windows, scales {SCALES.tolist()}: mean Spearman rho of each "
          f"measured attribute (columns) against the scale of the vector added (rows)\n")
    print("| vector | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for swept in names:
        per_input = {name: [] for name in names}
        for k in range(args.inputs):
            z = mu[k:k + 1] + torch.from_numpy(SCALES[:, None] * vectors[swept].vector[None]).float()
            measured = measure_attributes(converter, decode(model, z))
            for name in names:
                per_input[name].append(spearman(SCALES, measured[name]))
        row = [np.nanmean(per_input[name]) if not np.all(np.isnan(per_input[name])) else np.nan for name in names]
        print(f"| {swept} | " + " | ".join(f"**{v:+.2f}**" if n == swept else f"{v:+.2f}"
                                            for n, v in zip(names, row)) + " |")

    # The attribute-change matrix: +1 of each vector on args.matrix windows, the change of each mean.
    base = measure_attributes(converter, decode(model, mu[:args.matrix]))
    changes = {}
    for added in names:
        z = mu[:args.matrix] + torch.from_numpy(vectors[added].vector).float()
        after = measure_attributes(converter, decode(model, z))
        changes[added] = {name: np.nanmean(after[name]) - np.nanmean(base[name]) for name in names}
    relative = lambda name, change: change / abs(np.nanmean(base[name]))
    spread = lambda name, change: change / (vectors[name].top - vectors[name].bottom)
    for title, scaled, style in [
            ("the relative change of each attribute's mean (columns) against the reconstructions' means (the "
             "paper's measure)", relative, "{:+.0%}"),
            ("the change of each attribute's mean in units of its own spread in the data (the distance between "
             "its bottom and top quartiles' means, which +1 of its vector is meant to travel)", spread, "{:+.2f}")]:
        print(f"\nAttribute-change matrix over {args.matrix} test windows, each vector added at +1 (rows): {title}\n")
        print("| vector | " + " | ".join(names) + " |")
        print("|---" * (len(names) + 1) + "|")
        for added in names:
            cells = [style.format(scaled(name, changes[added][name])) for name in names]
            cells = [f"**{c}**" if name == added else c for name, c in zip(names, cells)]
            print(f"| {added} | " + " | ".join(cells) + " |")
    print("\nReconstructions' means: " + ", ".join(f"{n} {np.nanmean(base[n]):.3g}" for n in names))
    print("Quartile spreads (top - bottom): " + ", ".join(f"{n} {vectors[n].top - vectors[n].bottom:.3g}"
                                                          for n in names))


if __name__ == "__main__":
    main()
