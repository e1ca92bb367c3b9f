"""The built-in metrics, one family per file; importing this package registers them, in the
order of the results table. (The computations they use live beside this package, in
:mod:`attngan.metrics`: ``diversity.py``, ``inception_score.py``, ``fid.py`` ...; the files here
are named so that none shares a name with one of those.)

=======================  ==================================================================
``r_precision``          AttnGAN's R-precision with the model's DAMSM encoders (retrieval.py)
``scene_accuracy``       shapes: per-object accuracy of the slot scene classifier (attributes.py)
``attribute_accuracy``   tags: per-attribute accuracy of the attribute classifier (attributes.py)
``fd_damsm``             in-domain Fréchet distance on DAMSM image codes, with a real floor (frechet.py)
``fd_classifier``        in-domain Fréchet distance on classifier features, with a real floor (frechet.py)
``diversity``            shapes: spread of N seeds of a caption against N real renderings (diversity_metric.py)
``fid``                  FID, TF Inception-v3 2015-12-05 via torch-fidelity (frechet.py)
``is``                   Inception Score: the papers' network (CUB: birds-fine-tuned) (is_metrics.py)
``fid_torchvision``      "PyTorch FID" exactly as DM-GAN / DF-GAN compute it (frechet.py)
``is_torchvision``       Inception Score with torchvision's ImageNet Inception-v3 (is_metrics.py)
=======================  ==================================================================
"""

from . import attributes, diversity_metric, frechet, is_metrics, retrieval  # noqa: F401  (registration)
