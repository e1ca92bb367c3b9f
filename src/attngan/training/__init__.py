"""Training: the one loop (:mod:`.loop`), GAN and DAMSM trainers (:mod:`.gan`, :mod:`.damsm`),
their frozen configs (:mod:`.options`), checkpoints, EMA, several processes (:mod:`.distributed`)
and the periodic evaluation of a run. Import the modules themselves (``attngan.training.gan``);
this package imports nothing, so ``import attngan.training.options`` stays light."""
