"""The evaluation engine's parts: a metric is one registered unit, a :class:`Metric` subclass in
one file (the built-in ones live in :mod:`attngan.metrics.builtin`), saying

* what it needs -- :attr:`Metric.needs` (the model's DAMSM image encoder, a data set with
  attributes or shapes scenes, an attribute classifier) and :meth:`Metric.weights` (the local
  Inception weight file it reads, if any);
* how it collects per batch -- :meth:`Metric.collect` receives every :class:`SampleBatch` of
  generated images (with their captions and real images) and returns per-sample results;
  :meth:`Metric.collect_once` adds what each process computes once (e.g. a real-image floor);
* how it summarises -- :meth:`Metric.summarise` turns what every process collected into a
  result (values, label, feature extractor, counts), written as one JSONL record;
* how it prints -- :meth:`Metric.rows` (its rows of the results table: what, generated,
  real-image reference) and :meth:`Metric.notes` (lines printed below the table).

:func:`~attngan.metrics.run.run_evaluation` runs them (``attngan evaluate``, the periodic
evaluation of a GAN run and the tests alike). Adding a metric is writing one such class and
decorating it with :func:`register_metric`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..data.spec import DataSpec
from ..errors import SettingError
from .inception import WEIGHT_FILES, load_inception, require_weights_file
from .protocol import protocol_samples
from .records import MetricRecord

if TYPE_CHECKING:
    from ..hub import ModelBundle
    from ..inference.pipeline import AttnGANPipeline
    from .classifier import AttributeClassifier
    from .eval_data import EvalSamples

logger = logging.getLogger(__name__)

Row = tuple[str, str, str]  # what is measured, the generated images' figure, the real-image reference

NEED_PROBLEMS = {
    "image_encoder": "{name} needs the model folder's DAMSM image encoder (image_encoder), which this model lacks "
                     "(attngan convert --image-encoder adds it)",
    "attributes": "{name} needs a data set with attributes (--data shapes or tags)",
    "scenes": "{name} needs the shapes data set's scenes (--data shapes)",
    "no_scenes": "{name} scores one attribute set per image; shapes scenes are scored per object by scene_accuracy",
    "classifier": "{name} needs an attribute classifier (--classifier DIR or --train-classifier)",
}
RENAMED = {"attributes": "scene_accuracy (shapes) or attribute_accuracy (tags)"}


@dataclass(frozen=True)
class EvalSettings:
    """What an evaluation computes, whichever data it reads: the fields :class:`EvalConfig`
    (``attngan evaluate``, the library) and a GAN run's ``eval`` section
    (:class:`~attngan.training.options.EvalOptions`) share.

    ``num_samples`` None: the papers' count for the data set (30,000 for CUB and COCO,
    :data:`~attngan.metrics.protocol.PROTOCOL_SAMPLES`; 1,000 otherwise). ``metrics`` None:
    every metric the model, data and given weight files allow.
    """

    metrics: Sequence[str] | None = None
    num_samples: int | None = None
    batch_size: int = 50
    seed: int = 0
    inception_weights: str | os.PathLike[str] | None = None
    torchvision_inception_weights: str | os.PathLike[str] | None = None
    birds_inception_weights: str | os.PathLike[str] | None = None
    r_distractors: int = 99
    r_folds: int = 10
    is_splits: int = 10
    fid_method: str = "sqrtm"  # "sqrtm": the standard computation; "eigh": exact for PSD covariances, faster
    diversity_captions: int = 50  # captions of the diversity metric (the split's first ones)
    diversity_seeds: int = 8  # images per caption, generated and real

    def __post_init__(self) -> None:
        if self.num_samples is not None and self.num_samples < 1:
            raise SettingError("num_samples", f"must be >= 1, got {self.num_samples}")
        if self.batch_size < 1:
            raise SettingError("batch_size", f"must be >= 1, got {self.batch_size}")

    def settings(self) -> dict[str, Any]:
        """The :class:`EvalSettings` fields of this object, by name (to build another kind from them)."""
        return {f.name: getattr(self, f.name) for f in fields(EvalSettings)}


@dataclass(frozen=True)
class EvalConfig(EvalSettings):
    """What an evaluation computes (the ``attngan evaluate`` options): :class:`EvalSettings` on
    ``data`` (its ``split`` None: ``test``), with the images saved to ``save_images`` and the
    first ``preview`` samples kept for a report."""

    data: DataSpec = field(default_factory=DataSpec)
    save_images: str | os.PathLike[str] | None = None
    preview: int = 16  # samples kept (rank 0) for a report's grid of generated and real images

    @property
    def split(self) -> str:
        return self.data.split_or("test")

    @property
    def sample_count(self) -> int:
        """``num_samples``, or the protocol's count for the data set."""
        return self.num_samples if self.num_samples is not None else protocol_samples(self.data.kind)

    @property
    def weight_paths(self) -> dict[str, Any]:
        """Inception kind -> the local weight file given for it (or None)."""
        return {"tf": self.inception_weights, "torchvision": self.torchvision_inception_weights,
                "birds": self.birds_inception_weights}


@dataclass(frozen=True)
class Capabilities:
    """What an evaluation has: the data kind, the model's image encoder, a data set with
    attributes / shapes scenes, an attribute classifier and the local weight files."""

    data_kind: str = "shapes"
    image_encoder: bool = True
    attributes: bool = False
    scenes: bool = False
    classifier: bool = False
    weights: Mapping[str, Any] = field(default_factory=dict)

    def has(self, need: str) -> bool:
        if need == "no_scenes":
            return not self.scenes
        return bool(getattr(self, need))


class Metric:
    """One evaluation metric; subclass, set :attr:`name`, and register with :func:`register_metric`."""

    name: ClassVar[str] = ""
    needs: ClassVar[tuple[str, ...]] = ()  # keys of NEED_PROBLEMS, checked in order
    min_real: ClassVar[int] = 0  # distinct real images needed (Fréchet distances: 2)
    order: ClassVar[int] = 1000  # place in automatic mode and in the table (built-in metrics: 10, 20, ...)

    def applies(self, caps: Capabilities) -> bool:
        """False when the metric has no meaning for this data at all (left out silently in
        automatic mode, e.g. per-image attribute accuracy on shapes scenes)."""
        return True

    def problem(self, caps: Capabilities) -> str | None:
        """Why this metric cannot run with ``caps``; None when it can."""
        for need in self.needs:
            if not caps.has(need):
                return NEED_PROBLEMS[need].format(name=self.name)
        return None

    def weights(self, caps: Capabilities) -> str | None:
        """The Inception kind (``tf``, ``torchvision``, ``birds``) whose local weight file this
        metric reads with ``caps``; None when it reads none."""
        return None

    def setup(self, ctx: EvalContext) -> None:
        """Load what the metric needs before the batches (networks: ``ctx.resource``)."""

    def collect(self, batch: SampleBatch, ctx: EvalContext) -> Mapping[str, Any] | None:
        """Per-sample results of one batch (CPU tensors or lists), appended under their keys."""
        return None

    def collect_once(self, ctx: EvalContext) -> Mapping[str, list[Any]] | None:
        """What this process adds once after its batches (lists, extended under their keys)."""
        return None

    def summarise(self, parts: dict[str, list[Any]], ctx: EvalContext) -> dict[str, Any]:
        """The result from every process's collected lists (in sample order): ``values``,
        ``label``, ``feature_extractor``, ``num_samples``, further entries for the record's
        ``extra``, and ``details`` (not recorded: data for reports and breakdowns)."""
        raise NotImplementedError

    def rows(self, record: MetricRecord) -> list[Row]:
        """Rows of the results table for ``record`` (default: one per value)."""
        return [(key, format_value(value), "") for key, value in record["values"].items()]

    def notes(self, record: MetricRecord) -> list[str]:
        """Lines printed below the table (which networks, per-object tables...)."""
        return []


_METRICS: dict[str, type[Metric]] = {}


def register_metric(cls: type[Metric]) -> type[Metric]:
    """Class decorator: make ``cls`` (a :class:`Metric` with a unique ``name``) available to every evaluation."""
    if not (isinstance(cls, type) and issubclass(cls, Metric)) or not cls.name:
        raise TypeError("register_metric takes a Metric subclass with a name")
    if cls.name in _METRICS and _METRICS[cls.name] is not cls:
        raise ValueError(f"metric {cls.name!r} is already registered")
    _METRICS[cls.name] = cls
    return cls


def unregister_metric(name: str) -> None:
    """Remove metric ``name`` (a KeyError names it when it is not registered)."""
    if name not in _METRICS:
        raise KeyError(f"metric {name!r} is not registered")
    del _METRICS[name]


def metric_names() -> list[str]:
    """The registered metrics by :attr:`Metric.order`, then registration order."""
    return sorted(_METRICS, key=lambda name: _METRICS[name].order)


def get_metric(name: str) -> Metric:
    """A fresh instance of metric ``name``."""
    if name not in _METRICS:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(_METRICS)}")
    return _METRICS[name]()


def resolve_metrics(requested: Sequence[str] | None, caps: Capabilities) -> tuple[list[str], list[str]]:
    """The metrics to compute and notes on those left out.

    Explicitly requested metrics that cannot run raise (``MissingWeightsError`` names the
    weights flag); with ``requested=None`` (every registered metric) they are left out with a note.
    """
    names = metric_names() if requested is None else list(dict.fromkeys(requested))
    unknown = [n for n in names if n not in _METRICS]
    if unknown:
        hints = "".join(f"; {n} is now {RENAMED[n]}" for n in unknown if n in RENAMED)
        raise SettingError("metrics", f"unknown metric(s) {', '.join(unknown)}; choose from "
                                      f"{', '.join(metric_names())}{hints}")
    chosen, notes = [], []
    skipped: dict[str, list[str]] = {}
    for name in names:
        metric = get_metric(name)
        if requested is None and not metric.applies(caps):
            continue
        problem = metric.problem(caps)
        if problem is not None:
            if requested is not None:
                raise SettingError("metrics", problem)
            notes.append(f"{name} skipped: {problem}")
            continue
        kind = metric.weights(caps)
        if kind is not None:
            file, argument, flag, purpose = WEIGHT_FILES[kind]
            path = caps.weights.get(kind)
            if requested is None and path is None:
                skipped.setdefault(f"pass {flag} FILE ({file}) to compute it", []).append(name)
                continue
            require_weights_file(path, file, argument, purpose)
        chosen.append(name)
    notes += [f"{', '.join(which)} skipped: {how}" for how, which in skipped.items()]
    if not chosen:
        raise SettingError("metrics", "nothing to compute; " + "; ".join(notes))
    return chosen, notes


class SampleBatch(dict):
    """One batch of an evaluation: the caption plan's fields
    (:meth:`~attngan.metrics.eval_data.EvalSamples.collate`), ``images`` ``[B, 3, S, S]`` (the
    generated final stage, [-1, 1], CPU) and ``real_first`` ``[R, 3, S, S]`` (the real images of
    its first-pass samples, those that count as real references)."""

    def __init__(self, fields: Mapping[str, Any]) -> None:
        super().__init__(fields)
        self._memo: dict[str, Any] = {}

    def memo(self, key: str, make: Callable[[], Any]) -> Any:
        """A value several metrics read (features of one network), computed once per batch."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def first(self, key: str) -> Any:
        """Field ``key`` of the first-pass samples only."""
        mask = self["first_pass"]
        value = self[key]
        if isinstance(value, torch.Tensor):
            return value[mask]
        return [v for v, keep in zip(value, mask.tolist()) if keep]

    def features(self, extractor: Any, real: bool = False) -> torch.Tensor:
        """``extractor.features`` ``[B, F]`` of the generated (or, ``real``, the first-pass real)
        images, on the CPU, computed once per batch and extractor."""
        images = self["real_first"] if real else self["images"]
        key = f"{'real' if real else 'gen'}:{extractor.identity}"
        return self.memo(key, lambda: _features(extractor, images))

    def features_and_logits(self, extractor: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features [B, F], logits [B, K])`` of an Inception network on the generated images (CPU)."""
        def make() -> tuple[torch.Tensor, torch.Tensor]:
            with torch.inference_mode():
                feats, logits = extractor.features_and_logits(self["images"])
            return feats.float().cpu(), logits.float().cpu()

        feats, logits = self.memo(f"gen+logits:{extractor.identity}", make)
        self._memo.setdefault(f"gen:{extractor.identity}", feats)
        return feats, logits


def _features(extractor: Any, images: torch.Tensor) -> torch.Tensor:
    if images.shape[0] == 0:
        return torch.zeros(0, 0)
    with torch.inference_mode():
        return extractor.features(images).float().cpu()


@dataclass
class EvalContext:
    """What metrics read during an evaluation: the pipeline, the settings, the caption plan
    (``samples``), the attribute classifier, this process's rank, shared networks
    (:meth:`resource`) and the real-image floor features (:meth:`request_floor`)."""

    pipeline: AttnGANPipeline
    cfg: EvalConfig
    samples: EvalSamples
    caps: Capabilities
    classifier: AttributeClassifier | None = None
    classifier_info: dict[str, Any] | None = None
    rank: int = 0
    world_size: int = 1
    resources: dict[str, Any] = field(default_factory=dict)
    floor_extractors: dict[str, Any] = field(default_factory=dict)
    floor_features: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    floor_description: str = ""

    @property
    def bundle(self) -> ModelBundle:
        return self.pipeline.bundle


    @property
    def device(self) -> torch.device:
        return self.pipeline.device

    @property
    def image_size(self) -> int:
        return int(self.bundle.config.generator.image_sizes[-1])

    @property
    def num_samples(self) -> int:
        return int(self.samples.num_samples)

    def resource(self, key: str, make: Callable[[], Any]) -> Any:
        """A network or table shared by the metrics of this evaluation, built once."""
        if key not in self.resources:
            self.resources[key] = make()
        return self.resources[key]

    def inception(self, kind: str) -> Any:
        """The Inception network ``kind`` (``tf``, ``torchvision``, ``birds``) from its local weight
        file, loaded once per evaluation."""
        return self.resource(f"inception:{kind}", lambda: load_inception(kind, self.cfg.weight_paths[kind], self.device))

    def request_floor(self, name: str, extractor: Any) -> None:
        """Ask for ``extractor``'s features of as many real images of the floor source as the
        evaluation covers (:func:`~attngan.metrics.run.floor_source`), in ``floor_features[name]``
        after the batches (this process's share)."""
        self.floor_extractors[name] = extractor

    def generate(self, tokens: torch.Tensor, lengths: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        """Final-stage images ``[B, 3, S, S]`` in [-1, 1] (CPU) of token rows ``[B, T]``, image i from
        ``seeds[i]``, through the pipeline's tensor entry (its backend, precision and fast path)."""
        out = self.pipeline.generate_from_tokens(tokens, lengths, list(seeds), batch_size=len(seeds))
        return out.images[-1].clamp(-1, 1).float().cpu()


def needed_classifier(ctx: EvalContext) -> AttributeClassifier:
    """``ctx``'s attribute classifier, for a metric that needs it (never None then: the engine
    leaves such a metric out, or refuses it, without one)."""
    if ctx.classifier is None:
        raise SettingError("classifier", "this metric needs the attribute classifier")
    return ctx.classifier


def needed_image_encoder(ctx: EvalContext) -> torch.nn.Module:
    """The model's DAMSM image encoder, for a metric that needs it (as :func:`needed_classifier`)."""
    encoder = ctx.bundle.image_encoder
    if encoder is None:
        raise SettingError("image_encoder", "this metric needs the model's DAMSM image encoder")
    return encoder


def format_value(value: Any) -> str:
    """A figure for the results table (4 decimals, or 4 significant digits when large or small)."""
    if value is None:
        return ""
    if isinstance(value, bool) or isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}" if value == 0 or 0.01 <= abs(value) < 1e5 else f"{value:.4g}"
    return str(value)


def table_lines(records: Sequence[MetricRecord]) -> list[str]:
    """Lines of the results table: each record's rows from its metric (:meth:`Metric.rows`)."""
    rows: list[Row] = []
    for record in records:
        name = record["metric"]
        metric = _METRICS[name]() if name in _METRICS else Metric()
        rows += metric.rows(record)
    width = max([len(r[0]) for r in rows] + [6])
    lines = [f"{'metric':<{width}}  {'generated':<18}  real images"]
    lines += [f"{a:<{width}}  {b:<18}  {c}".rstrip() for a, b, c in rows]
    return lines


def record_notes(records: Sequence[MetricRecord]) -> list[str]:
    """Every record's :meth:`Metric.notes`, in record order."""
    out: list[str] = []
    for record in records:
        if record["metric"] in _METRICS:
            out += _METRICS[record["metric"]]().notes(record)
    return out
