"""Does each object's word reach its own object? Word attention on two-object shapes captions.

    .venv/bin/python benchmarks/attention_binding.py [--model DIR] [--split validation] [--num-images 200]

For the two-object scenes of a split (their own captions, seed = the scene's index), the
generator's attention maps of every refinement stage are read inside each object's box (the
box the object would have at its cell's centre; the generated object sits in the same cell).
For each attribute word that differs between the two objects (colour, shape), it prints:

* ``own > other``: the share of (image, word) pairs whose word weighs more, on average, inside its
  own object's box than inside the other object's (0.5: the attention does not tell the objects
  apart; 1.0: every word goes to its own object);
* ``own share``: mean of own / (own + other);
* ``first / second``: the same share for the first-named and the second-named object's word
  (a generator that paints both objects with the first colour gives the first a share near 0.5
  and the second one below it).

A generator can only give two objects their own colours through this attention (the first stage
draws every object in one hue, see docs/experiments/shapes_model.md), so this is where a
two-object colour error starts. It reads the attention only; scene accuracy is the evaluation's.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections import defaultdict

import torch

from attngan.data.shapes import ShapesDataset, object_box
from attngan.inference.pipeline import AttnGANPipeline


def box_mean(attention: torch.Tensor, box: tuple[float, float, float, float]) -> torch.Tensor:
    """``[T, H, W]`` attention -> ``[T]``: each word's mean weight inside ``box`` (fractions of the side)."""
    h, w = attention.shape[-2:]
    x0, y0, x1, y1 = box
    c0, c1 = int(x0 * w), max(int(x0 * w) + 1, int(round(x1 * w)))
    r0, r1 = int(y0 * h), max(int(y0 * h) + 1, int(round(y1 * h)))
    return attention[:, r0:r1, c0:c1].mean((-1, -2))


def word_position(tokens: list[str], word: str, last: bool) -> int | None:
    """Index of the first (or last) occurrence of ``word`` in ``tokens``; None when absent."""
    hits = [i for i, t in enumerate(tokens) if t == word]
    return (hits[-1] if last else hits[0]) if hits else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder [the bundled model]")
    parser.add_argument("--split", default="validation", choices=["validation", "test", "unseen"])
    parser.add_argument("--num-images", type=int, default=200, help="two-object scenes to read")
    parser.add_argument("--batch-size", type=int, default=50)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    pipe = AttnGANPipeline.from_pretrained(args.model, precision="fp32")
    data = ShapesDataset(args.split, image_sizes=(64,), vocab=pipe.vocab, train=False)
    picked = [i for i in range(len(data)) if len(data.scene(i).objects) == 2][: args.num_images]
    if not picked:
        raise SystemExit(f"the {args.split} split has no two-object scene")
    # stats[stage][attribute] -> list of (own, other, which object)
    stats: dict[int, dict[str, list[tuple[float, float, int]]]] = defaultdict(lambda: defaultdict(list))
    for start in range(0, len(picked), args.batch_size):
        batch = picked[start:start + args.batch_size]
        captions = [data.caption_text(i, 0) for i in batch]
        out = pipe(captions, num_images=1, seed=list(batch))
        for row, index in enumerate(batch):
            scene, tokens = data.scene(index), out.captions[row].tokens
            boxes = [object_box(dataclasses.replace(o, dx=0.0, dy=0.0)) for o in scene.objects]
            for attribute in ("color", "shape"):
                words = [getattr(o, attribute) for o in scene.objects]
                if words[0] == words[1]:
                    continue
                places = [word_position(tokens, words[0], last=False), word_position(tokens, words[1], last=True)]
                if None in places:
                    continue
                for stage, maps in enumerate(out.attention_maps):
                    inside = [box_mean(maps[row], box) for box in boxes]
                    for k in (0, 1):
                        own, other = float(inside[k][places[k]]), float(inside[1 - k][places[k]])
                        stats[stage][attribute].append((own, other, k))
    print(f"model {pipe.name} ({pipe.model_hash[:12]}), shapes {args.split} split, {len(picked)} two-object "
          f"scenes, caption 0 each, seed = scene index")
    print("stage  grid   word    pairs  own > other  own share  first / second")
    for stage in sorted(stats):
        size = out.attention_maps[stage].shape[-1]
        for attribute, rows in stats[stage].items():
            t = torch.tensor(rows)
            share = t[:, 0] / (t[:, 0] + t[:, 1]).clamp_min(1e-12)
            firsts = share[t[:, 2] == 0].mean()
            seconds = share[t[:, 2] == 1].mean()
            print(f"{stage:5d}  {size:2d}x{size:<2d}  {attribute:6s} {len(rows):6d}  {(t[:, 0] > t[:, 1]).float().mean():11.3f}"
                  f"  {share.mean():9.3f}  {firsts:.3f} / {seconds:.3f}")


if __name__ == "__main__":
    main()
