"""Where a shapes model's attribute errors are: accuracy by size and the shape confusion matrix.

    .venv/bin/python benchmarks/shapes_breakdown.py [--model DIR] [--num-samples 1000]

Uses the same held-out test captions, seeds (seed k for sample k) and cached attribute
classifier as ``attngan evaluate`` (train it once with ``attngan evaluate --train-classifier``).
"""

from __future__ import annotations

import argparse

import torch

from attngan.data.shapes import SHAPES, SIZES, ShapesDataset
from attngan.inference.pipeline import AttnGANPipeline
from attngan.metrics.classifier import attribute_hits
from attngan.metrics.eval_data import DataSpec, data_classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder [the bundled model]")
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=50)
    args = parser.parse_args()
    pipe = AttnGANPipeline.from_pretrained(args.model)
    vocab = pipe.bundle.vocab
    data = ShapesDataset("test", image_sizes=(64,), vocab=vocab, train=False)
    items = [data[i % len(data)] for i in range(args.num_samples)]
    captions = [" ".join(vocab.words[t] for t in item["tokens"][: item["length"]].tolist()) for item in items]
    n, b = len(items), args.batch_size
    images = torch.cat([pipe(captions[i:i + b], seed=list(range(i, min(i + b, n)))).images[-1]
                        for i in range(0, n, b)])
    attributes = torch.stack([item["attributes"] for item in items])
    classifier, _ = data_classifier(DataSpec("shapes"))
    hits = attribute_hits(classifier, images, attributes)
    print(f"model {pipe.name}, {n} images; accuracy (shape, colour, size, position):",
          " ".join(f"{v:.3f}" for v in hits.float().mean(0).tolist()), f"all {hits.all(1).float().mean():.3f}")
    for z, size in enumerate(SIZES):
        m = attributes[:, 2] == z
        print(f"{size:6s} {int(m.sum()):5d} images: shape {hits[m, 0].float().mean():.3f}, "
              f"all {hits[m].all(1).float().mean():.3f}")
    predicted = torch.cat([classifier.predict(images[i:i + 256]) for i in range(0, n, 256)])[:, 0]
    confusion = torch.zeros(len(SHAPES), len(SHAPES), dtype=torch.int64)
    confusion.index_put_((attributes[:, 0], predicted), torch.ones(n, dtype=torch.int64), accumulate=True)
    print("shape confusion (rows: caption, columns: classifier):", " ".join(s[:5] for s in SHAPES))
    for name, row in zip(SHAPES, confusion.tolist(), strict=True):
        print(f"{name:8s}", " ".join(f"{v:5d}" for v in row))


if __name__ == "__main__":
    main()
