"""Convert the original AttnGAN's checkpoints into attngan modules and inference folders."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from numbers import Integral
from pathlib import Path

import torch

from ..config import ModelConfig
from ..models.discriminator import Discriminator
from ..models.generator import Generator
from ..models.image_encoder import InceptionImageEncoder
from ..models.text_encoder import TextEncoder
from ..text import Vocabulary, pick_example_captions, spread_positions
from ..untrusted import load_captions_pickle, load_state_dict_file
from . import legacy
from .folders import EXAMPLES_KEY, ModelBundle, save_pretrained

log = logging.getLogger(__name__)

EXAMPLE_COUNT = 6


def _test_caption_texts(captions: list, ixtoword: dict[int, str]) -> Iterator[str]:
    """The original's token-id captions as text, spread over the list (:func:`spread_positions`);
    entries that are not lists of known ids are passed over."""
    for position in spread_positions(len(captions), EXAMPLE_COUNT):
        caption = captions[position]
        if isinstance(caption, (list, tuple)) and all(isinstance(i, Integral) and int(i) in ixtoword for i in caption):
            yield " ".join(ixtoword[int(i)] for i in caption if int(i) != 0)


def _load_into(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    state = legacy.fill_num_batches_tracked(state, module.state_dict())
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{what}: weights do not fit the inferred architecture: {str(exc)[:300]}") from None
    module.eval()


def text_encoder_from_legacy(state: dict[str, torch.Tensor], max_words: int = 18, what: str = "text encoder") -> TextEncoder:
    """An original ``RNN_ENCODER`` state_dict -> :class:`TextEncoder` (eval mode)."""
    module = TextEncoder(legacy.infer_text_encoder_config(state, max_words))
    _load_into(module, legacy.from_legacy(state, legacy.TEXT_ENCODER_RULES, what), what)
    return module


def generator_from_legacy(state: dict[str, torch.Tensor], what: str = "generator") -> Generator:
    """An original ``G_NET`` / ``G_DCGAN`` state_dict -> :class:`Generator` (eval mode)."""
    module = Generator(legacy.infer_generator_config(state))
    _load_into(module, legacy.from_legacy(state, legacy.generator_rules(state), what), what)
    return module


def discriminator_from_legacy(state: dict[str, torch.Tensor], what: str = "discriminator") -> Discriminator:
    """An original ``D_NET64/128/256`` state_dict -> :class:`Discriminator` (eval mode)."""
    config = legacy.infer_discriminator_config(state)
    module = Discriminator(config)
    _load_into(module, legacy.from_legacy(state, legacy.discriminator_rules(config.image_size), what), what)
    return module


def image_encoder_from_legacy(state: dict[str, torch.Tensor], what: str = "image encoder") -> InceptionImageEncoder:
    """An original ``CNN_ENCODER`` state_dict -> :class:`InceptionImageEncoder` (eval mode)."""
    module = InceptionImageEncoder(legacy.infer_image_encoder_config(state))
    _load_into(module, legacy.from_legacy(state, legacy.IMAGE_ENCODER_RULES, what), what)
    return module


def convert_original(
    generator_path: str | os.PathLike[str],
    text_encoder_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    captions_pickle: str | os.PathLike[str] | None = None,
    vocab: Vocabulary | None = None,
    image_encoder_path: str | os.PathLike[str] | None = None,
    max_words: int = 18,
    name: str = "attngan-converted",
) -> Path:
    """Original ``netG_epoch_*.pth`` + ``text_encoder*.pth`` (+ ``image_encoder*.pth``) and the
    vocabulary of ``captions.pickle`` -> an inference folder at ``out_dir``. A few of the
    pickle's test captions are kept as the model's ``example_captions``."""
    examples: list[str] = []
    if captions_pickle is None and vocab is None:
        raise ValueError("a vocabulary is needed: pass captions.pickle (or a vocab.json)")
    if captions_pickle is not None:
        _, test_captions, ixtoword, _ = load_captions_pickle(captions_pickle)
        if vocab is None:
            vocab = Vocabulary.from_index_to_word(ixtoword)
        examples = pick_example_captions(_test_caption_texts(test_captions, ixtoword), vocab, EXAMPLE_COUNT, max_words)
    assert vocab is not None  # given, or read from captions.pickle (checked above)
    text_encoder = text_encoder_from_legacy(load_state_dict_file(text_encoder_path), max_words,
                                            str(text_encoder_path))
    if len(vocab) != text_encoder.config.vocab_size:
        raise ValueError(f"vocabulary has {len(vocab)} words but {text_encoder_path} embeds "
                         f"{text_encoder.config.vocab_size}: they come from different data sets")
    generator = generator_from_legacy(load_state_dict_file(generator_path), str(generator_path))
    if generator.config.text_dim != text_encoder.config.hidden_dim:
        raise ValueError(f"{generator_path} expects text features of {generator.config.text_dim} but "
                         f"{text_encoder_path} gives {text_encoder.config.hidden_dim}")
    image_encoder = None
    if image_encoder_path is not None:
        image_encoder = image_encoder_from_legacy(load_state_dict_file(image_encoder_path), str(image_encoder_path))
    config = ModelConfig(text_encoder=text_encoder.config, generator=generator.config,
                         image_encoder=image_encoder.config if image_encoder is not None else None, name=name)
    meta: dict[str, object] = {"source": "converted from the original AttnGAN",
                               "files": [Path(p).name for p in (generator_path, text_encoder_path, image_encoder_path) if p]}
    if examples:
        meta[EXAMPLES_KEY] = examples
    bundle = ModelBundle(config, vocab, text_encoder, generator, image_encoder, meta)
    log.info("writing %s", out_dir)
    return save_pretrained(bundle, out_dir)
