"""Training configuration: frozen dataclasses resolved from a YAML preset plus overrides.

Only the CLI reads YAML; trainers receive these objects. ``resolve_config`` merges a preset
with ``key.sub=value`` overrides and rejects unknown keys by name.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Literal, overload

import yaml

from ..config import (
    ConfigError,
    DAMSMLossConfig,
    DiscriminatorConfig,
    GeneratorConfig,
    ImageEncoderConfig,
    TextEncoderConfig,
    from_dict,
)
from ..data.spec import DataSpec
from ..metrics.engine import EvalSettings


@dataclass(frozen=True)
class EvalOptions(EvalSettings):
    """The ``eval`` section: what the periodic evaluation of a GAN run (every ``run.eval_every``
    steps, main process, through :func:`attngan.metrics.run_evaluation`) computes: the
    :class:`~attngan.metrics.EvalSettings` of ``attngan evaluate`` on the run's data, read
    from ``split`` with ``data_extra``. Its records are appended to ``<run>/evaluations.jsonl``;
    a failure is logged, never fatal."""

    num_samples: int | None = 1000
    split: str = "test"
    data_extra: dict[str, Any] = field(default_factory=dict)  # replaces data.extra (e.g. a shapes split's size)
    classifier: str | None = None  # attribute-classifier folder (None: the cached one, if any)


@dataclass(frozen=True)
class OptimOptions:
    lr: float = 0.0002
    beta1: float = 0.5
    beta2: float = 0.999


@dataclass(frozen=True)
class SpeedOptions:
    """How a training step is computed, never what: with each option the step gives the same result
    to float rounding (``tests/test_training_step.py``). The defaults are those that
    ``benchmarks/run.py --only train`` measured faster; :meth:`reference` turns every one off (the
    original's computation, module for module)."""

    subpixel: bool = True  # generator up-blocks (upsample x2 + 3x3 conv) as four-phase 2x2 convolutions
    fold_encoder: bool = True  # the frozen DAMSM image encoder with its BatchNorms folded, channels-last
    release_gradients: bool = True  # gradients freed right after each optimiser step (lower peak memory)
    channels_last: bool = False  # discriminators and a trained image encoder in channels-last (slower here)
    fused_adam: bool = True  # Adam's fused kernel
    one_backward: bool = True  # one backward pass over the summed discriminator losses
    checkpoint_encoder: bool = False  # recompute the frozen image encoder in the backward pass (memory)
    keep_heap: bool = True  # the C allocator keeps freed memory for the next step (training/memory.py)
    # torch.compile (inductor) of the generator, the discriminators, the image encoder and the loss terms;
    # fixed shapes, kernels cached (inductor/ in the cache, cache.py); eager with one warning where no compiler works
    compile: bool = False
    matmul_logits: bool = True  # the discriminators' 4x4 logit convolutions as matrix products
    encoder_first: bool = True  # the DAMSM terms' backward through the image encoder first, freeing its activations
    checkpoint_last_stage: bool = False  # recompute the generator's last stage in the backward pass (memory)
    # each discriminator weight updated as soon as its gradient is complete in the backward pass, its
    # gradient freed at once (memory; one process only: under torchrun the gradients are averaged first)
    update_in_backward: bool = False

    @classmethod
    def reference(cls) -> SpeedOptions:
        return cls(**{f.name: False for f in fields(cls)})


@dataclass(frozen=True)
class RunOptions:
    """What every training run shares: length, logging, checkpoints, precision."""

    out_dir: str = "runs/attngan"
    seed: int = 0
    batch_size: int = 20  # global batch (split over processes under torchrun)
    max_steps: int = 1000
    log_every: int = 10
    sample_every: int = 200
    checkpoint_every: int = 200
    keep_checkpoints: int = 3
    precision: str = "fp32"  # fp32 | bf16 (autocast) | auto (bf16 where the device has native bf16, else fp32)
    device: str = "auto"  # auto | cpu | cuda
    deterministic: bool = False
    threads: int = 0  # torch intra-op threads; 0 = torch's default
    time_limit_minutes: float = 0.0  # stop (saving a checkpoint) after this long; 0 = none
    eval_every: int = 0  # GAN runs: evaluate (the ``eval`` section) every this many steps; 0 = never
    speed: SpeedOptions = field(default_factory=SpeedOptions)

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16", "auto"):
            raise ConfigError(f"run.precision must be 'fp32', 'bf16' or 'auto', not {self.precision!r}")
        if self.batch_size < 2:
            raise ConfigError("run.batch_size must be >= 2 (the losses contrast samples in a batch)")


@dataclass(frozen=True)
class DAMSMTrainConfig:
    """``attngan train-damsm``: text and image encoders trained with the DAMSM losses."""

    text_encoder: TextEncoderConfig
    image_encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    data: DataSpec = field(default_factory=DataSpec)
    run: RunOptions = field(default_factory=RunOptions)
    loss: DAMSMLossConfig = field(default_factory=DAMSMLossConfig)
    optim: OptimOptions = field(default_factory=lambda: OptimOptions(lr=0.002))
    rnn_grad_clip: float = 0.25
    lr_decay_per_epoch: float = 0.98  # as the original, down to lr / 10
    imagenet_weights: str | None = None  # torchvision inception_v3 state_dict (local file)


@dataclass(frozen=True)
class HardNegativeOptions:
    """How a GAN run uses the counterfactual captions that ``data.counterfactuals`` adds to each
    training caption (:mod:`attngan.data.counterfactual`); without them these do nothing."""

    discriminator: bool = True  # (real image, counterfactual caption) pairs join the mismatched term
    damsm: bool = True  # the generator's DAMSM term ranks its caption above the counterfactuals too
    # weight of a generator term asking each discriminator's conditional head to rank a generated
    # image's own caption above its counterfactuals (0: off): the word-by-word check of the
    # discriminators, apart from their real-or-fake verdict
    generator: float = 0.0
    # weight of a discriminator term asking each conditional head to rank a real image's own caption
    # above its counterfactuals (0: off). The mismatched term alone leaves the heads near chance on
    # the words other attributes make redundant (shapes: shape and colour; see
    # benchmarks/discriminator_probe.py), so the adversarial term carries no signal for them
    discriminator_ranking: float = 0.0

    def __post_init__(self) -> None:
        if self.generator < 0:
            raise ConfigError("hard_negatives.generator must be >= 0")
        if self.discriminator_ranking < 0:
            raise ConfigError("hard_negatives.discriminator_ranking must be >= 0")
        if self.discriminator_ranking > 0 and not self.discriminator:
            raise ConfigError("hard_negatives.discriminator_ranking needs hard_negatives.discriminator "
                              "(the counterfactual pairs it ranks)")


@dataclass(frozen=True)
class GANTrainConfig:
    """``attngan train``: the generator and discriminators with frozen DAMSM encoders."""

    generator: GeneratorConfig
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)  # image_size set per stage
    damsm: str = ""  # folder written by train-damsm (encoders + vocab), or a model folder saved with its image encoder
    data: DataSpec = field(default_factory=DataSpec)
    run: RunOptions = field(default_factory=RunOptions)
    loss: DAMSMLossConfig = field(default_factory=DAMSMLossConfig)
    optim_g: OptimOptions = field(default_factory=OptimOptions)
    optim_d: OptimOptions = field(default_factory=OptimOptions)
    kl_weight: float = 1.0
    # the generator's DAMSM weight rises linearly from 0 to loss.weight over this many steps (0: from
    # the start, as the original): a small image encoder's gradient on a random generator draws
    # textures that please the encoder, before the discriminators have taught any realism
    damsm_warmup: int = 0
    # the generated images the DAMSM term scores are moved by up to this many pixels, each its own
    # random shift (edges replicated): a small image encoder is then harder to please with a
    # pixel-exact texture instead of the object (0: off, as the original)
    damsm_shift: int = 0
    adversarial_loss: str = "bce"  # "bce" (the original) or "hinge"
    # DF-GAN's matching-aware gradient penalty on real images with their own captions (weight; 0 = off)
    gradient_penalty: float = 0.0
    hard_negatives: HardNegativeOptions = field(default_factory=HardNegativeOptions)
    # weight of the generator's term through an encoder discriminator: a trainable conditional head
    # over the frozen DAMSM image encoder's region features of the last stage (0: off, as the
    # original; training/encoder_discriminator.py)
    encoder_discriminator: float = 0.0
    # the encoder discriminator's own copy of the image encoder (BatchNorms folded) is trained with its
    # head instead of frozen: it starts from the encoder's word knowledge and keeps learning from the
    # generated images (the generator's DAMSM term still uses the frozen encoder)
    encoder_discriminator_trainable: bool = False
    # weight of MSGAN's mode-seeking term (Mao et al. 2019; 0: off): a quarter of each batch's captions
    # is drawn a second time from other noise (in the same generator pass, so its BatchNorm statistics
    # cover both), and the generator is asked to move their images apart
    diversity_weight: float = 0.0
    # the mode-seeking distance ignores a change of the whole image by one colour (each pair's
    # difference is measured from its per-channel median): in pixels, recolouring the background is
    # the cheapest way to look diverse, and a generator that buys its diversity so draws the
    # background from the noise instead of the caption (shapes: a named background right 0.47)
    diversity_shift_invariant: bool = False
    ema_decay: float = 0.999
    ema_warmup: int = 100  # effective decay min(ema_decay, (1 + step) / (ema_warmup + step))
    # re-estimate the exported EMA generator's BatchNorm statistics on this many training batches
    # (0: keep the live generator's, as the original does; they belong to other weights)
    ema_batchnorm_batches: int = 0
    name: str = "attngan"
    eval: EvalOptions = field(default_factory=EvalOptions)
    # a run folder (its newest checkpoint) or a checkpoint file: a fresh run's generator, EMA and
    # discriminators start from its weights (a curriculum, or fine-tuning on other data); or a model
    # folder: the generator and its EMA start from its generator, the discriminators from those kept
    # with it (else fresh; training/warm_start.py): more steps for a saved model. The step, optimisers
    # and random state start fresh, and --resume takes the run's own checkpoint instead
    init_from: str = ""
    # the generator is not updated for this many first steps: the discriminators alone learn, so that
    # fresh ones catch up with a generator that starts trained (init_from a model folder) before it
    # follows their gradients
    generator_hold: int = 0

    def __post_init__(self) -> None:
        if self.adversarial_loss not in ("bce", "hinge"):
            raise ConfigError(f"adversarial_loss must be 'bce' or 'hinge', not {self.adversarial_loss!r}")
        if self.gradient_penalty < 0:
            raise ConfigError("gradient_penalty must be >= 0")
        if self.damsm_shift < 0:
            raise ConfigError("damsm_shift must be >= 0")
        if self.encoder_discriminator < 0:
            raise ConfigError("encoder_discriminator must be >= 0")
        if self.diversity_weight < 0:
            raise ConfigError("diversity_weight must be >= 0")
        if self.generator_hold < 0:
            raise ConfigError("generator_hold must be >= 0")


CONFIG_TYPES: dict[str, type[DAMSMTrainConfig] | type[GANTrainConfig]] = {"damsm": DAMSMTrainConfig,
                                                                          "gan": GANTrainConfig}


def preset_path(name: str) -> Path:
    """A preset shipped with the package (``shapes``, ``birds``...) or a YAML file path."""
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        if not candidate.exists():
            raise FileNotFoundError(f"preset file not found: {candidate}")
        return candidate
    path = Path(str(resources.files("attngan") / "configs" / f"{name}.yaml"))
    if not path.exists():
        available = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise FileNotFoundError(f"unknown preset {name!r}; available: {', '.join(available)}")
    return path


def load_preset(name: str) -> dict[str, Any]:
    """The raw mapping of a preset: ``{"damsm": {...}, "gan": {...}}``."""
    path = preset_path(name)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a preset must be a mapping with 'damsm' and/or 'gan' sections")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``["run.max_steps=50", "data.root=/x"]`` applied to a nested mapping (values parsed as YAML)."""
    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {key}: {p} is not a section")
            node = nxt
        node[parts[-1]] = yaml.safe_load(raw)
    return out


@overload
def resolve_config(kind: Literal["gan"], preset: str, overrides: list[str] | None = None) -> GANTrainConfig: ...
@overload
def resolve_config(kind: Literal["damsm"], preset: str, overrides: list[str] | None = None) -> DAMSMTrainConfig: ...
@overload
def resolve_config(kind: str, preset: str, overrides: list[str] | None = None) -> GANTrainConfig | DAMSMTrainConfig: ...
def resolve_config(kind: str, preset: str, overrides: list[str] | None = None) -> GANTrainConfig | DAMSMTrainConfig:
    """Build a ``DAMSMTrainConfig`` (kind ``damsm``) or ``GANTrainConfig`` (``gan``)."""
    data = load_preset(preset)
    if kind not in data:
        raise ConfigError(f"preset {preset!r} has no {kind!r} section")
    section = apply_overrides(data[kind], overrides or [])
    return from_dict(CONFIG_TYPES[kind], section, kind)


def route_overrides(overrides: list[str], sections: tuple[str, ...] = ("damsm", "gan")) -> dict[str, list[str]]:
    """``--set`` items of a run with several sections, each sent where it belongs: ``damsm.KEY=V``
    / ``gan.KEY=V`` to that section (as ``KEY=V``), any other ``KEY=V`` to every section that has
    the field ``KEY`` starts with (``run.threads=1``: both; ``generator.channels=8`` and
    ``damsm=FOLDER``: the GAN's)."""
    routed: dict[str, list[str]] = {name: [] for name in sections}
    known = {name: {f.name for f in fields(CONFIG_TYPES[name])} for name in sections}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        head, dot, rest = key.strip().partition(".")
        if head in sections and dot:
            routed[head].append(f"{rest}={value}")
            continue
        targets = [name for name in sections if head in known[name]]
        if not targets:
            raise ConfigError(f"override {key}: no section has a field {head!r} (prefix damsm. or gan. to choose one)")
        for name in targets:
            routed[name].append(item)
    return routed


def resolve_data_run(preset: str, data_root: str, out_dir: str, overrides: list[str] | None = None,
                     damsm: str | None = None) -> tuple[DAMSMTrainConfig | None, GANTrainConfig]:
    """The two phases of ``attngan train --data-root``: ``(DAMSM config or None, GAN config)``, both
    reading ``data_root`` and writing to ``out_dir``; overrides routed by :func:`route_overrides`.
    The DAMSM phase is None when encoders are named (``damsm``, or an override of the GAN's
    ``damsm``), and the GAN then uses those; else it uses the DAMSM phase's ``<out_dir>/damsm``
    (the preset's own ``gan.damsm`` is not a naming: it belongs to a two-command workflow)."""
    data = load_preset(preset)
    missing = [kind for kind in ("damsm", "gan") if kind not in data]
    if missing:
        raise ConfigError(f"preset {preset!r} has no {' or '.join(repr(m) for m in missing)} section")
    routed = route_overrides(list(overrides or []) + ([f"damsm={damsm}"] if damsm else []))

    def section(kind: str) -> Any:
        raw = {k: v for k, v in data[kind].items() if not (kind == "gan" and k == "damsm")}
        merged = apply_overrides(raw, routed[kind])
        for part, key, value in (("data", "root", str(data_root)), ("run", "out_dir", str(out_dir))):
            if not isinstance(merged.setdefault(part, {}), dict):
                raise ConfigError(f"{kind}.{part}: expected a mapping")
            merged[part][key] = value
        return from_dict(CONFIG_TYPES[kind], merged, kind)

    gan = section("gan")
    if gan.damsm:
        return None, gan
    return section("damsm"), dataclasses.replace(gan, damsm=str(Path(out_dir) / "damsm"))
