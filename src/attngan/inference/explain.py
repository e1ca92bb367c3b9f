"""What a model makes of a caption, and how well its DAMSM encoders think an image matches it:
the values the server's explainer page shows (``POST /v1/explain``) and ``attngan explain``
prints, computed here once.

* text: the caption's tokens, word features ``[D, T]`` and sentence feature ``[D]``;
* conditioning (generated images only): ``mu``, ``sigma`` and the condition drawn from them;
* DAMSM (models whose folder has the image encoder): the cosine between the sentence feature
  and the image's global code, the word-region score of eq. 10 and each word's attention over
  the image regions (eq. 9), scored with the smoothing factors the encoders were trained with
  (the model config's ``damsm``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..config import DAMSMLossConfig
from ..losses.damsm import cosine_similarity_matrix, word_image_similarity
from ..text import EncodedCaption

if TYPE_CHECKING:
    from .pipeline import AttnGANPipeline, PipelineOutput


@dataclass(frozen=True)
class TextExplanation:
    """The text encoder's view of a caption: ``word_features [D, T]``, ``sentence [D]``."""

    tokens: list[str]
    word_features: torch.Tensor
    sentence: torch.Tensor

    @property
    def word_norms(self) -> torch.Tensor:
        """``[T]``: the length of each word's feature."""
        return self.word_features.norm(dim=0)


@dataclass(frozen=True)
class ConditioningExplanation:
    """Conditioning augmentation of a generated image: ``mu``, ``sigma``, ``condition`` ``[C]``
    and the size of the noise vector beside them."""

    mu: torch.Tensor
    sigma: torch.Tensor
    condition: torch.Tensor
    noise_dim: int


@dataclass(frozen=True)
class DAMSMMatch:
    """How well the DAMSM encoders think an image matches a caption: ``attention [T, h, w]``
    (each word's attention over the ``h x w`` image regions, summing to 1 per word)."""

    sentence_image_cosine: float
    word_region_score: float
    attention: torch.Tensor

    @property
    def region_size(self) -> int:
        return int(self.attention.shape[-1])


@dataclass(frozen=True)
class Explanation:
    """All of it for one image ``[3, S, S]`` in [-1, 1]; ``conditioning`` is None for an image
    that was not generated, ``damsm`` None for a model without its DAMSM image encoder."""

    caption: EncodedCaption
    image: torch.Tensor
    text: TextExplanation
    conditioning: ConditioningExplanation | None
    damsm: DAMSMMatch | None
    seed: int | None = None


@torch.inference_mode()
def damsm_match(image_encoder: nn.Module, image: torch.Tensor, word_features: torch.Tensor,
                sentence: torch.Tensor, loss: DAMSMLossConfig) -> DAMSMMatch:
    """Score ``image [3, S, S]`` (in [-1, 1]) against a caption's ``word_features [D, T]`` and
    ``sentence [D]`` with the DAMSM ``image_encoder`` and the smoothing factors ``loss``."""
    device = next(image_encoder.parameters()).device
    regions, global_code = image_encoder(image[None].to(device).float())
    lengths = torch.tensor([word_features.shape[1]], device=device)
    score, attention = word_image_similarity(regions.float(), word_features[None].to(device).float(), lengths,
                                             loss.gamma1, loss.gamma2)
    cosine = cosine_similarity_matrix(sentence[None].to(device).float(), global_code.float())
    return DAMSMMatch(float(cosine[0, 0]), float(score[0, 0]), attention[0].float().cpu())


def explain_output(pipeline: AttnGANPipeline, out: PipelineOutput, k: int) -> Explanation:
    """The explanation of image ``k`` of ``out``, a pipeline call made with
    ``return_intermediates=True``."""
    inter = out.intermediates
    if "word_features" not in inter:
        raise ValueError("explain_output needs a pipeline output made with return_intermediates=True")
    caption = out.captions[k]
    words = inter["word_features"][k, :, : len(caption.tokens)].float().cpu()  # [D, T]
    sentence = inter["sentence_features"][k].float().cpu()
    conditioning = ConditioningExplanation(inter["mu"][k].float().cpu(),
                                           torch.exp(0.5 * inter["logvar"][k].float()).cpu(),
                                           inter["condition"][k].float().cpu(), int(inter["noise"].shape[1]))
    image = out.images[-1][k]
    return Explanation(caption, image, TextExplanation(caption.tokens, words, sentence), conditioning,
                       _match(pipeline, image, words, sentence), out.seeds[k])


@torch.inference_mode()
def explain(pipeline: AttnGANPipeline, caption: str, image: torch.Tensor | None = None, seed: int = 0,
            num_stages: int | None = None) -> Explanation:
    """Explain ``caption``: against ``image [3, S, S]`` (in [-1, 1], any size the image
    encoder takes) when given, else against the image the pipeline generates with ``seed``."""
    if image is None:
        out = pipeline(caption, seed=seed, num_stages=num_stages, return_intermediates=True)
        return explain_output(pipeline, out, 0)
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be [3, S, S], got {tuple(image.shape)}")
    encoded = pipeline.encode_captions([caption])[0]
    tokens = torch.tensor([encoded.ids], device=pipeline.device)
    words, sentence = pipeline.backend.encode_text(tokens, torch.tensor([len(encoded.ids)]))
    words, sentence = words[0].float().cpu(), sentence[0].float().cpu()
    return Explanation(encoded, image.float().cpu(), TextExplanation(encoded.tokens, words, sentence), None,
                       _match(pipeline, image, words, sentence))


def _match(pipeline: AttnGANPipeline, image: torch.Tensor, words: torch.Tensor, sentence: torch.Tensor
           ) -> DAMSMMatch | None:
    encoder = pipeline.bundle.image_encoder
    if encoder is None:
        return None
    return damsm_match(encoder, image, words, sentence, pipeline.config.damsm)
