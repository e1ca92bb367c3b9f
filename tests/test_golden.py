"""Parity with the original AttnGAN: every tensor of the reference vector to <= 1e-5."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from attngan.hub.convert import discriminator_from_legacy, generator_from_legacy, text_encoder_from_legacy
from attngan.losses import kl_loss, sentence_loss, words_loss

from .conftest import GOLDEN, require_golden

TOL = 1e-5


@pytest.fixture(scope="module")
def ref() -> dict:
    path = require_golden(GOLDEN / "attngan_reference_tiny.pt")
    return torch.load(path, weights_only=True)


def close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    diff = (actual.double() - expected.double()).abs().max().item()
    assert diff <= TOL, f"{what}: max abs difference {diff:.3g} > {TOL}"


@torch.inference_mode()
def test_text_encoder(ref: dict) -> None:
    enc = text_encoder_from_legacy(ref["text_encoder"], max_words=7)
    words, sent = enc(ref["captions"], ref["cap_lens"])
    close(words, ref["words_emb"], "words_emb")
    close(sent, ref["sent_emb"], "sent_emb")


@torch.inference_mode()
def test_generator_every_stage_and_attention(ref: dict) -> None:
    gen = generator_from_legacy(ref["netG"])
    assert gen.config.num_stages == 3 and gen.config.channels == 4
    out = gen(ref["noise"], ref["sent_emb"], ref["words_emb"], ref["mask"], eps=ref["eps"])
    close(out.mu, ref["mu"], "mu")
    close(out.logvar, ref["logvar"], "logvar")
    close(out.condition, ref["c_code"], "c_code")
    close(kl_loss(out.mu, out.logvar), ref["kl_loss"], "kl_loss")
    for i, (img, exp) in enumerate(zip(out.images, ref["fake_imgs"], strict=True)):
        close(img, exp, f"fake_imgs[{i}]")
    for i, (att, exp) in enumerate(zip(out.attention_maps, ref["att_maps"], strict=True)):
        close(att, exp, f"att_maps[{i}]")


@torch.inference_mode()
def test_discriminators(ref: dict) -> None:
    for i, state in enumerate(ref["netsD"]):
        disc = discriminator_from_legacy(state)
        assert disc.config.image_size == 64 * 2**i
        features = disc(ref["fake_imgs"][i])
        close(features, ref["d_features"][i], f"d_features[{i}]")
        cond, uncond = disc.logits(features, ref["sent_emb"])
        close(torch.sigmoid(cond), ref["d_cond_logits"][i], f"d_cond_logits[{i}]")
        assert uncond is not None
        close(torch.sigmoid(uncond), ref["d_uncond_logits"][i], f"d_uncond_logits[{i}]")


@torch.inference_mode()
def test_damsm_losses(ref: dict) -> None:
    w0, w1, att = words_loss(ref["img_features"], ref["words_emb"], ref["cap_lens"], ref["class_ids"])
    close(w0, ref["w_loss0"], "w_loss0")
    close(w1, ref["w_loss1"], "w_loss1")
    for i, exp in enumerate(ref["words_att_maps"]):
        n = int(ref["cap_lens"][i])
        close(att[i : i + 1, :n], exp, f"words_att_maps[{i}]")
    s0, s1 = sentence_loss(ref["cnn_code"], ref["sent_emb"], ref["class_ids"])
    close(s0, ref["s_loss0"], "s_loss0")
    close(s1, ref["s_loss1"], "s_loss1")


@torch.inference_mode()
def test_per_sample_masking_differs_only_where_original_mispairs(ref: dict) -> None:
    """Our default masks each sample's own padding; the original's tiling pairs rows with the
    wrong sample. Both agree for a batch whose captions have equal length."""
    gen = generator_from_legacy(ref["netG"])
    fixed = type(gen)(dataclasses.replace(gen.config, legacy_mask_tiling=False))
    fixed.load_state_dict(gen.state_dict())
    fixed.eval()
    args = (ref["noise"], ref["sent_emb"], ref["words_emb"], ref["mask"])
    a = gen(*args, eps=ref["eps"]).attention_maps[0]
    b = fixed(*args, eps=ref["eps"]).attention_maps[0]
    # per-sample masking puts no weight on a caption's padding
    lens = ref["cap_lens"]
    for i in range(3):
        assert b[i, int(lens[i]):].abs().sum() == 0
    assert (a - b).abs().max() > 1e-3  # the original's mispairing changes the maps
    same = ref["mask"][:1].expand(3, -1)
    a1 = gen(ref["noise"], ref["sent_emb"], ref["words_emb"], same, eps=ref["eps"]).attention_maps[0]
    b1 = fixed(ref["noise"], ref["sent_emb"], ref["words_emb"], same, eps=ref["eps"]).attention_maps[0]
    close(a1, b1, "equal-length masks")
