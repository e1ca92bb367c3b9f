"""Does a DAMSM know each word of the shapes captions? For real images of one-object scenes of a
split, every caption is re-written with one attribute changed to each of its other values (the
same template and synonyms), and the encoders rank the variants: the share of images whose own
caption ranks first, per attribute, by the word-level score (paper eq. 10) and the sentence cosine.

    python benchmarks/damsm_probe.py runs/shapes-damsm/damsm --split validation --num-images 300

A generator learns an attribute from the DAMSM term only as well as the encoders know it, so
this is the first thing to check when a shapes model ignores a word. (It reads real images
only; it is not the evaluation, which scores generated images with a separate classifier.)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import numpy as np
import torch

from attngan.data.shapes import COLORS, POSITIONS, SHAPES, SIZES, ShapesDataset
from attngan.data.shapes_captions import first_synonyms, format_caption
from attngan.hub import load_damsm
from attngan.losses.damsm import cosine_similarity_matrix, word_image_similarity
from attngan.text import pad_batch

ATTRIBUTES = {"shape": SHAPES, "color": COLORS, "size": SIZES, "position": POSITIONS}


@torch.inference_mode()
def probe(damsm_folder: str, split: str, num_images: int, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per attribute: ``{"words": accuracy, "sentence": accuracy, "chance": 1 / values}``."""
    enc = load_damsm(damsm_folder)
    text, image = enc.text_encoder.eval(), enc.image_encoder.eval()
    max_words = text.config.max_words
    data = ShapesDataset(split=split, size=num_images * 4, image_sizes=(image.config.image_size,), train=False,
                         max_words=max_words, seed=seed)
    hits: dict[str, dict[str, list[bool]]] = {a: {"words": [], "sentence": []} for a in ATTRIBUTES}
    rng = np.random.default_rng(seed)
    done = 0
    for index in range(len(data)):
        scene = data.scene(index)
        if len(scene.objects) != 1 or done >= num_images:
            continue
        done += 1
        item = data[index]
        regions, code = image(item["images"][-1][None])
        template = int(rng.integers(0, 8))
        draws = rng.random(len(first_synonyms(1)))
        for attribute, values in ATTRIBUTES.items():
            obj = scene.objects[0]
            own = getattr(obj, attribute)
            variants = [own] + [v for v in values if v != own]
            captions = [format_caption([dataclasses.replace(obj, **{attribute: v})], scene.background, template, draws)
                        for v in variants]
            encoded = [enc.vocab.encode(c, max_words) for c in captions]
            tokens, lengths = pad_batch([e.ids for e in encoded])
            words, sentence = text(tokens, lengths)
            score, _ = word_image_similarity(regions.expand(len(captions), -1, -1, -1), words, lengths, 4.0, 5.0)
            hits[attribute]["words"].append(int(score[0].argmax()) == 0)
            cosine = cosine_similarity_matrix(code, sentence)[0]
            hits[attribute]["sentence"].append(int(cosine.argmax()) == 0)
    return {a: {"words": float(np.mean(h["words"])), "sentence": float(np.mean(h["sentence"])),
                "chance": 1 / len(ATTRIBUTES[a]), "images": len(h["words"])} for a, h in hits.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("damsm", help="a DAMSM folder (written by attngan train-damsm)")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--num-images", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = probe(args.damsm, args.split, args.num_images)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.damsm}, {args.split} split, one-object real images: the own caption ranked first among "
          "variants differing in one attribute")
    print(f"{'attribute':<10} {'word score':>10} {'sentence':>10} {'chance':>8} {'images':>7}")
    for attribute, r in result.items():
        print(f"{attribute:<10} {r['words']:>10.3f} {r['sentence']:>10.3f} {r['chance']:>8.3f} {r['images']:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
