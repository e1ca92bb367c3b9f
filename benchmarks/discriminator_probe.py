"""Do a run's discriminators know each word of the shapes captions? For real images of a split,
each caption is re-written with one thing changed (one object's shape, colour, size or position,
or an attribute exchanged between two objects, as :mod:`benchmarks.damsm_probe`), and each
discriminator's conditional logit ranks the own caption against every such variant: the share of
images whose own caption scores highest, per stage and attribute (and for the encoder
discriminator's head, ``enc``, when the run has one). With ``--generated`` the same
is asked of the run's EMA generator's images for the own caption (what the discriminators
reward the generator for).

    python benchmarks/discriminator_probe.py ~/.cache/attngan-runs/RUN --split validation --num-images 300

A generator learns an attribute from its adversarial term only as well as the discriminators tell
it apart on real images; a word they rank near chance (1 / (variants + 1)) gets its whole signal
from the DAMSM term. (Real images and the checkpoint only; this is a diagnosis, not the evaluation.)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

from attngan.config import from_dict
from attngan.data.shapes import ShapesDataset
from attngan.data.shapes_captions import names_background
from attngan.data.shapes_counterfactuals import COUNTERFACTUAL_KINDS, all_counterfactuals
from attngan.hub import load_damsm
from attngan.models.discriminator import Discriminator, FeatureDiscriminator
from attngan.models.generator import Generator
from attngan.text import pad_batch
from attngan.training.checkpoint import latest_checkpoint, load_checkpoint
from attngan.training.fast_layers import fold_frozen_batchnorms
from attngan.training.options import GANTrainConfig

KINDS = {1: [k for k in COUNTERFACTUAL_KINDS if k != "exchange"], 2: list(COUNTERFACTUAL_KINDS)}


@torch.inference_mode()
def probe(run: str, split: str, num_images: int, checkpoint: str | None = None, seed: int = 0,
          generated: bool = False) -> dict[str, object]:
    """``{"step", "stages": {size: {scene kind: {attribute: share}}}}``: per discriminator, the
    share of images whose own caption gets the highest conditional logit among its variants."""
    path, state = (Path(checkpoint), load_checkpoint(checkpoint)) if checkpoint else latest_checkpoint(
        Path(run) / "checkpoints") or (None, None)
    if state is None:
        raise SystemExit(f"{run}/checkpoints: no checkpoint")
    cfg = from_dict(GANTrainConfig, dict(state["config"]), "config")
    enc = load_damsm(cfg.damsm)
    text, vocab = enc.text_encoder.eval(), enc.vocab
    text_dim = text.config.hidden_dim
    sizes = cfg.generator.image_sizes
    discriminators = []
    for size, weights in zip(sizes[-len(state["models"]["discriminators"]):], state["models"]["discriminators"],
                             strict=True):
        # a run without BatchNorm in its discriminators has no running statistics
        batchnorm = any(k.endswith("running_mean") for k in weights)
        d = Discriminator(dataclasses.replace(cfg.discriminator, image_size=size, text_dim=text_dim,
                                              batchnorm=batchnorm))
        d.load_state_dict(weights)
        discriminators.append(d.eval())
    # the encoder discriminator (encoder_discriminator > 0): its head over the image encoder's regions
    head = None
    if "encoder_discriminator" in state["models"]:
        image_encoder = enc.image_encoder.eval()
        if "backbone" in state["models"]["encoder_discriminator"]:  # trained with the head
            image_encoder = fold_frozen_batchnorms(image_encoder).to(memory_format=torch.contiguous_format)
            image_encoder.load_state_dict(state["models"]["encoder_discriminator"]["backbone"])
        head = FeatureDiscriminator(image_encoder.config.embedding_dim, text_dim, cfg.discriminator.channels,
                                    cfg.discriminator.spectral_norm)
        head.load_state_dict(state["models"]["encoder_discriminator"]["head"])
        head.eval()
    judges = len(discriminators) + (head is not None)
    generator = None
    if generated:
        generator = Generator(dataclasses.replace(cfg.generator, text_dim=text_dim))
        ema = state["models"]["ema"]  # the EMA's own state: "shadow." + the generator's keys
        generator.load_state_dict({k[len("shadow."):]: v for k, v in ema.items() if k.startswith("shadow.")})
        generator.eval()
    max_words = text.config.max_words
    extra = dict(cfg.data.extra)
    data = ShapesDataset(split=split, size=num_images * 3, image_sizes=tuple(d.config.image_size
                                                                             for d in discriminators),
                         train=False, max_words=max_words, seed=seed,
                         max_objects=int(extra.get("max_objects", 2)))
    hits: dict[int, dict[str, list[list[bool]]]] = {n: {k: [[] for _ in range(judges)] for k in KINDS[n]}
                                                    for n in (1, 2)}
    done = {1: 0, 2: 0}
    noise = torch.Generator().manual_seed(seed)
    for index in range(len(data)):
        scene = data.scene(index)
        n = len(scene.objects)
        if done[n] >= num_images:
            continue
        done[n] += 1
        item = data[index]
        caption = int(item["caption_index"])
        own = data.caption_text(index, caption)
        pictures = [image[None] for image in item["images"]]
        if generator is not None:
            tokens, lengths = pad_batch([vocab.encode(own, max_words).ids])
            words, sentence = text(tokens, lengths)
            z = torch.randn(1, cfg.generator.noise_dim, generator=noise)
            eps = torch.randn(1, cfg.generator.condition_dim, generator=noise)
            out = generator(z, sentence, words, tokens == 0, eps=eps)
            pictures = list(out.images)[-len(discriminators):]
        features = [d(p) for d, p in zip(discriminators, pictures, strict=True)]
        heads = [d.conditional_head for d in discriminators]
        if head is not None:
            features.append(head(image_encoder(pictures[-1])[0]))
            heads.append(head.conditional_head)
        for kind in KINDS[n]:
            variants = all_counterfactuals(scene, kind, names_background(own))
            if not variants:
                continue
            captions = [own] + [data.caption_with(index, caption, v) for v in variants]
            tokens, lengths = pad_batch([vocab.encode(c, max_words).ids for c in captions])
            _, sentences = text(tokens, lengths)
            for i, (h, f) in enumerate(zip(heads, features, strict=True)):
                logits = h(f.expand(len(captions), -1, -1, -1), sentences)
                hits[n][kind][i].append(bool((logits[1:] < logits[0]).all()))
        if min(done.values()) >= num_images:
            break
    names = [str(d.config.image_size) for d in discriminators] + (["enc"] if head is not None else [])
    stages = {stage: {name: {k: float(np.mean(h[i])) for k, h in hits[n].items() if h[i]}
                      for name, n in (("one", 1), ("two", 2))}
              for i, stage in enumerate(names)}
    return {"checkpoint": str(path), "step": int(state["step"]), "stages": stages}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a training run's folder (its newest checkpoint is read)")
    parser.add_argument("--checkpoint", help="this checkpoint file instead of the newest")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--num-images", type=int, default=300, help="images of each scene kind")
    parser.add_argument("--generated", action="store_true", help="the EMA generator's images instead of real ones")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = probe(args.run, args.split, args.num_images, args.checkpoint, generated=args.generated)
    if args.json:
        print(json.dumps({"run": args.run, "split": args.split, "generated": args.generated, **result}))
        return 0
    images = "generated" if args.generated else "real"
    print(f"{result['checkpoint']} (step {result['step']}), {args.split} split, {images} images: the own caption's "
          "conditional logit above every variant's")
    stages = result["stages"]
    assert isinstance(stages, dict)
    for size, table in stages.items():
        for scene, row in table.items():
            if row:
                print(f"D{size:<4} {scene:<4} " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
