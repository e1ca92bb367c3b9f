"""Does a DAMSM know each word of the shapes captions? For real images of a split, each caption
is re-written with one thing changed -- one object's shape, colour, size or position, or (two
objects) an attribute exchanged between them, which asks which object a word belongs to -- and
the encoders rank the own caption against every such variant (same template and synonyms): the
share of images whose own caption ranks first, per attribute, by the word-level score (paper
eq. 10) and by the sentence cosine, for one-object and two-object scenes.

    python benchmarks/damsm_probe.py runs/shapes-damsm/damsm --split validation --num-images 300
    python benchmarks/damsm_probe.py src/attngan/assets/shapes-64 --json   # a model folder's encoders
    python benchmarks/damsm_probe.py runs/shapes/model --generated runs/shapes/model   # generated images

With ``--generated MODEL`` each real image is replaced by MODEL's image for the same (own)
caption (seed = the image's index): the encoders' ranking then says which words the generated
images carry *for the encoders*. Set beside the classifier's scene accuracy on the same model,
a word the encoders find (high here) but the classifier does not (low there) is a word the
generator answers with a texture that pleases the encoders rather than with the object.

A generator learns an attribute from the DAMSM term only as well as the encoders know it, so
this is the first thing to check when a shapes model ignores a word. (It reads real images
only; it is not the evaluation, which scores generated images with a separate classifier.)
Variants never name a held-out shape x colour pair (they are the training counterfactuals'
kinds: :mod:`attngan.data.shapes_counterfactuals`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from attngan.data.shapes import ShapesDataset
from attngan.data.shapes_captions import names_background
from attngan.data.shapes_counterfactuals import COUNTERFACTUAL_KINDS, all_counterfactuals
from attngan.hub import load_damsm, load_pretrained
from attngan.losses.damsm import cosine_similarity_matrix, word_image_similarity
from attngan.text import pad_batch

KINDS = {1: [k for k in COUNTERFACTUAL_KINDS if k not in ("exchange", "swap")], 2: list(COUNTERFACTUAL_KINDS)}


def load_encoders(folder: str) -> tuple[torch.nn.Module, torch.nn.Module, object]:
    """``(text encoder, image encoder, vocabulary)`` of a DAMSM folder or of a model folder."""
    if (Path(folder) / "config.json").exists() and "attngan-damsm" in (Path(folder) / "config.json").read_text():
        enc = load_damsm(folder)
        return enc.text_encoder.eval(), enc.image_encoder.eval(), enc.vocab
    bundle = load_pretrained(folder)
    if bundle.image_encoder is None:
        raise SystemExit(f"{folder}: the model folder has no image encoder")
    return bundle.text_encoder.eval(), bundle.image_encoder.eval(), bundle.vocab


@torch.inference_mode()
def probe(folder: str, split: str, num_images: int, seed: int = 0,
          generated: str | None = None, truncation: float | None = None,
          candidates: int | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """Per scene kind (``one``, ``two``) and attribute: ``{"words", "sentence", "images"}``
    accuracies (the own caption first among its variants; ties count as misses). ``generated``: a
    model folder whose images (for the own caption, seed = index) replace the real ones, drawn at
    ``truncation`` and ``candidates`` (None: the model's own)."""
    text, image, vocab = load_encoders(folder)
    pipe = None
    if generated is not None:
        from attngan.inference.pipeline import AttnGANPipeline

        pipe = AttnGANPipeline.from_pretrained(generated, exact=True, truncation=truncation, candidates=candidates)
    max_words = text.config.max_words
    data = ShapesDataset(split=split, size=num_images * 3, image_sizes=(image.config.image_size,), train=False,
                         max_words=max_words, seed=seed)
    hits: dict[int, dict[str, dict[str, list[bool]]]] = {
        n: {k: {"words": [], "sentence": []} for k in KINDS[n]} for n in (1, 2)}
    done = {1: 0, 2: 0}
    for index in range(len(data)):
        scene = data.scene(index)
        n = len(scene.objects)
        if done[n] >= num_images:
            if min(done.values()) >= num_images:
                break
            continue
        done[n] += 1
        item = data[index]
        caption = int(item["caption_index"])
        own = data.caption_text(index, caption)
        picture = item["images"][-1][None]
        if pipe is not None:
            out = pipe(own, seed=index).images[-1]
            if out.shape[-1] != picture.shape[-1]:
                out = torch.nn.functional.interpolate(out, size=picture.shape[-2:], mode="bilinear",
                                                      align_corners=False, antialias=True)
            picture = out
        regions, code = image(picture)
        for kind in KINDS[n]:
            variants = all_counterfactuals(scene, kind, names_background(own))
            if not variants:  # e.g. the background of a caption that does not name it
                continue
            captions = [own] + [data.caption_with(index, caption, v) for v in variants]
            tokens, lengths = pad_batch([vocab.encode(c, max_words).ids for c in captions])
            words, sentence = text(tokens, lengths)
            score, _ = word_image_similarity(regions.expand(len(captions), -1, -1, -1), words, lengths, 4.0, 5.0)
            hits[n][kind]["words"].append(bool((score[0, 1:] < score[0, 0]).all()))
            cosine = cosine_similarity_matrix(code, sentence)[0]
            hits[n][kind]["sentence"].append(bool((cosine[1:] < cosine[0]).all()))
    return {name: {k: {"words": float(np.mean(h["words"])), "sentence": float(np.mean(h["sentence"])),
                       "images": len(h["words"])} for k, h in hits[n].items()}
            for name, n in (("one", 1), ("two", 2))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="a DAMSM folder (written by attngan train-damsm) or a model folder")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--num-images", type=int, default=300, help="images of each scene kind")
    parser.add_argument("--generated", metavar="MODEL", help="score MODEL's images for the captions instead of the real ones")
    parser.add_argument("--truncation", type=float, help="of the generated images' noise [the model's own]")
    parser.add_argument("--candidates", type=int, help="best of K for the generated images [the model's own]")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = probe(args.folder, args.split, args.num_images, generated=args.generated, truncation=args.truncation,
                   candidates=args.candidates)
    images = f"images generated by {args.generated}" if args.generated else "real images"
    if args.json:
        print(json.dumps({"folder": args.folder, "split": args.split, "images": images, **result}))
        return 0
    print(f"{args.folder}, {args.split} split, {images}: the own caption ranked above every variant "
          "that changes one thing")
    print(f"{'scene':<6} {'change':<10} {'word score':>10} {'sentence':>10} {'images':>7}")
    for scene, table in result.items():
        for kind, r in table.items():
            print(f"{scene:<6} {kind:<10} {r['words']:>10.3f} {r['sentence']:>10.3f} {r['images']:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
