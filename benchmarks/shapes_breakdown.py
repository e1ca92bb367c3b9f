"""Everything a shapes model gets right and wrong, per object, on one split.

    .venv/bin/python benchmarks/shapes_breakdown.py [--model DIR] [--split test] [--num-samples 1000] [--truncation T]
        [--candidates K]

Runs the evaluation of ``attngan evaluate --data shapes`` (same captions, seeds, cached scene
classifier: train it once with ``--train-classifier``) and prints its per-object table,
R-precision, in-domain FDs and diversity, then where the errors are: words of the split the
model does not know, one-object accuracy by size with the shape confusion matrix, and
accuracy by the phrase a caption uses for a position, a size or a background (synonyms the
model may not have learnt). ``--json FILE`` also writes every figure.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import torch

from attngan.data import DataSpec
from attngan.data.shapes import BACKGROUNDS, POSITIONS, SHAPES, SIZES, ShapesDataset
from attngan.data.shapes_captions import BACKGROUND_WORDS, POSITION_PHRASES, SIZE_WORDS
from attngan.inference.pipeline import AttnGANPipeline
from attngan.metrics import EvalConfig, run_evaluation
from attngan.metrics.classifier import confusion_counts
from attngan.metrics.eval_data import data_classifier, describe_classifier
from attngan.metrics.scenes import PAIRINGS, SceneHits, place_pairing, scene_table
from attngan.text import tokenize


def phrase_rows(hits: SceneHits, texts: list[str], scenes: list) -> dict[str, dict[str, list[bool]]]:
    """Per kind (position / size / background), per phrase used in the caption: the hits of that attribute."""
    rows: dict[str, dict[str, list[bool]]] = {"position": defaultdict(list), "size": defaultdict(list),
                                              "background": defaultdict(list)}
    for b, (text, scene) in enumerate(zip(texts, scenes)):
        words = " ".join(tokenize(text))
        for k, obj in enumerate(scene.objects):
            for kind, table, value, column in (("position", POSITION_PHRASES, obj.position, 3),
                                               ("size", SIZE_WORDS, obj.size, 2)):
                used = [p for p in table[value] if f" {p} " in f" {words} "]
                if used:
                    rows[kind][max(used, key=len)].append(bool(hits.objects[b, k, column]))
        if hits.names_background[b]:
            used = [w for w in BACKGROUND_WORDS[scene.background] if w in words]
            rows["background"][max(used, key=len)].append(bool(hits.background[b]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder [the bundled model]")
    parser.add_argument("--split", default="test", choices=["validation", "test", "unseen"])
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classifier", help="scene-classifier folder [the cache]")
    parser.add_argument("--train-classifier", action="store_true", help="train and cache it first")
    parser.add_argument("--diversity-captions", type=int, default=50, help="0: no diversity figure")
    parser.add_argument("--truncation", type=float, help="of the noise, in (0, 1] [the model's own]")
    parser.add_argument("--candidates", type=int, help="best of K by the model's DAMSM, >= 1 [the model's own]")
    parser.add_argument("--json", help="also write every figure to this JSON file")
    args = parser.parse_args()
    pipe = AttnGANPipeline.from_pretrained(args.model, truncation=args.truncation, candidates=args.candidates)
    spec = DataSpec("shapes", split=args.split)
    classifier, folder = data_classifier(spec, args.classifier, train=args.train_classifier)
    metrics = ["scene_accuracy", "fd_classifier"] + (["diversity"] if args.diversity_captions > 0 else [])
    metrics += ["r_precision", "fd_damsm"] if pipe.bundle.image_encoder is not None else []
    cfg = EvalConfig(data=spec, metrics=metrics, num_samples=args.num_samples, batch_size=args.batch_size,
                     seed=args.seed, diversity_captions=max(args.diversity_captions, 1))
    result = run_evaluation(pipe, cfg, classifier, classifier_info=describe_classifier(classifier, folder))
    assert result is not None
    s = result.summary
    print(f"model {pipe.name} ({pipe.model_hash[:12]}), shapes {args.split} split, {args.num_samples} captions, "
          f"seed {args.seed}, truncation {pipe.truncation:g}, candidates {pipe.candidates}; classifier {folder}")
    for line in scene_table(s):
        print(line)
    if "r_precision" in s:
        print(f"R-precision {s['r_precision']:.3f} (real {s['real_r_precision']:.3f}); in-domain FD DAMSM "
              f"{s['fd_damsm']:.4g} (floor {s['fd_damsm_real_floor']:.4g})")
    print(f"in-domain FD classifier {s['fd_classifier']:.4g} (floor {s['fd_classifier_real_floor']:.4g})")
    if "diversity_ratio" in s:
        print(f"diversity over {s['num_captions']} captions x {s['num_seeds']} seeds: generated / real = "
              f"{s['diversity_generated']:.3f} / {s['diversity_real']:.3f} = {s['diversity_ratio']:.3f} "
              f"(pixels {s['diversity_pixels_ratio']:.3f})")

    data = ShapesDataset(args.split, image_sizes=(64,), vocab=pipe.vocab, train=False)
    print("words of the split's captions the model does not know:", ", ".join(sorted(data.unknown_words)) or "none")
    hits: SceneHits = result.details["scene_hits"]
    texts = result.details["caption_texts"]
    scenes = [data.scene(int(i)) for i in result.details["image_indices"]]  # the samples' images, in sample order
    attributes = torch.tensor([list(sc.objects[0].attributes) for sc in scenes])
    one = ~hits.present[:, 1]
    for z, size in enumerate(SIZES):
        m = one & (attributes[:, 2] == z)
        if m.any():
            print(f"one object, {size:5s} {int(m.sum()):5d}: shape {hits.objects[m, 0, 0].float().mean():.3f}, "
                  f"all {hits.objects[m, 0].all(1).float().mean():.3f}")
    confusion = confusion_counts(attributes[one, 0], hits.read[one, 0, 0], len(SHAPES))  # last column: nothing read
    print("one-object shape confusion (rows: caption, columns: classifier):", " ".join(x[:5] for x in SHAPES))
    for name, row in zip(SHAPES, confusion[:, :-1].tolist(), strict=True):
        print(f"  {name:8s}", " ".join(f"{v:5d}" for v in row))
    binding = place_pairing(hits)
    print("two objects that differ in an attribute, what their cells show (own / exchanged / both the first's /"
          " both the second's / other):")
    for name, row in binding.items():
        print(f"  {name:6s} {row['n']:5d}: " + " / ".join(f"{row[k]:.3f}" for k in PAIRINGS))
    phrases = phrase_rows(hits, texts, scenes)
    for kind, table in phrases.items():
        print(f"{kind} accuracy by the phrase used:",
              "; ".join(f"{p!r} {sum(v) / len(v):.3f} ({len(v)})" for p, v in sorted(table.items())))
    positions = torch.tensor([[POSITIONS.index(o.position) for o in sc.objects] + [-1] * (2 - len(sc.objects))
                              for sc in scenes])
    print("position accuracy by position:", "; ".join(
        f"{p} {hits.objects[..., 3][positions == i].float().mean():.3f}" for i, p in enumerate(POSITIONS)))
    background_of = torch.tensor([BACKGROUNDS.index(sc.background) for sc in scenes])
    named = hits.names_background
    print("background accuracy by background (captions that name it):",
          "; ".join(f"{b} {hits.background[named & (background_of == i)].float().mean():.3f}"
                    for i, b in enumerate(BACKGROUNDS)))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"summary": s, "truncation": pipe.truncation, "candidates": pipe.candidates, "binding": binding,
                       "phrases": {k: {p: sum(v) / len(v) for p, v in t.items()} for k, t in phrases.items()}},
                      f, indent=2, default=str)


if __name__ == "__main__":
    main()
