"""Feature extractors for the in-domain Fréchet distance (no ImageNet network needed).

The same Fréchet distance as FID, on features of a network trained on the data set itself:
the DAMSM image encoder's global code or the attribute classifier's penultimate layer.
Values are labelled "in-domain FD (...)" and are only comparable between runs that use the
same network (its weights hash is part of ``identity``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..fingerprint import state_fingerprint
from .classifier import AttributeClassifier


def module_fingerprint(module: nn.Module) -> str:
    """16-hex sha256 of a module's state dict (names, shapes, dtypes and values)."""
    return state_fingerprint(module.state_dict())[:16]


class DAMSMImageFeatures:
    """Global codes ``[N, D]`` of a DAMSM image encoder (``images -> (regions, global)``)."""

    name = "damsm-image-encoder"
    fid_label = "in-domain FD (DAMSM image-encoder features)"

    def __init__(self, image_encoder: nn.Module) -> None:
        self.encoder = image_encoder
        config = getattr(image_encoder, "config", None)
        kind = getattr(config, "kind", type(image_encoder).__name__)
        self.feature_dim = int(getattr(config, "embedding_dim", 0)) or None
        self.identity = f"DAMSM image encoder ({kind}) global code, weights sha256:{module_fingerprint(image_encoder)}"

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` in [-1, 1] -> ``[N, D]`` float32 (encoder in eval mode)."""
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            device = next(self.encoder.parameters()).device
            return self.encoder(images.to(device))[1].float()
        finally:
            self.encoder.train(was_training)


class ClassifierFeatures:
    """Penultimate features ``[N, feature_dim]`` of an :class:`AttributeClassifier`."""

    name = "attribute-classifier"
    fid_label = "in-domain FD (attribute-classifier features)"

    def __init__(self, classifier: AttributeClassifier) -> None:
        self.classifier = classifier
        self.feature_dim = classifier.config.feature_dim
        self.identity = (f"attribute classifier {list(classifier.config.attribute_names)} "
                         f"features {classifier.config.feature_dim}-d, weights sha256:{module_fingerprint(classifier)}")

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` in [-1, 1] -> ``[N, feature_dim]`` float32 (classifier in eval mode)."""
        was_training = self.classifier.training
        self.classifier.eval()
        try:
            device = next(self.classifier.parameters()).device
            return self.classifier.features(images.to(device)).float()
        finally:
            self.classifier.train(was_training)
