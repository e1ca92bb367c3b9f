"""Data sets: each item is a dict of stage images, a caption's token ids and metadata;
``collate`` batches them. ``build_dataset(kind, root, **kwargs)`` builds any of them."""

from .base import CaptionImageDataset, Record
from .coco import CocoDataset, CocoJsonDataset
from .common import (
    DataError,
    ImageCache,
    MissingImagesError,
    bbox_crop_region,
    collate,
    image_tensors,
    open_rgb,
    read_caption_file,
)
from .cub import CubDataset
from .folder import FolderDataset
from .registry import DATA_KINDS, build_dataset, build_from_options, dataset_kinds, example_captions
from .shapes import (
    BACKGROUNDS,
    COLORS,
    POSITIONS,
    SHAPES,
    SIZES,
    Scene,
    ShapeObject,
    ShapesDataset,
    caption_for,
    random_scene,
    render_shapes,
    shapes_vocabulary,
)
from .spec import DataSpec
from .tags import EYE_COLORS, HAIR_COLORS, TagsDataset
from .types import Batch, TextImageData

__all__ = [
    "BACKGROUNDS", "Batch", "TextImageData", "COLORS", "DATA_KINDS", "EYE_COLORS", "HAIR_COLORS", "POSITIONS", "SHAPES", "SIZES",
    "CaptionImageDataset", "CocoDataset", "CocoJsonDataset", "CubDataset", "DataError", "DataSpec", "FolderDataset",
    "ImageCache", "MissingImagesError", "Record", "Scene", "ShapeObject", "ShapesDataset", "TagsDataset",
    "bbox_crop_region", "build_dataset", "build_from_options", "caption_for", "collate", "dataset_kinds", "example_captions", "image_tensors", "open_rgb",
    "random_scene", "read_caption_file", "render_shapes", "shapes_vocabulary",
]
