"""Request and response models of the HTTP API (they also make its OpenAPI schema).

Request models are strict (a JSON string or a boolean is never taken for a number) and
reject unknown fields; a whole number written with a fraction (``2.0``) is an integer, as
JSON Schema says. Every limit is checked on the value as sent, so a body is valid exactly
when the declared schema says so; the one further check is that a caption has a word the
model knows (422 ``unknown_words``), which no schema can state. Limits that depend on the
server's settings (images per request, stages of the loaded model) are built into the
models by :func:`request_models`.
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    create_model,
)

MAX_CAPTION_CHARS = 1000
MAX_SEED = 2**53


def _whole_number(value: Any) -> Any:
    """``2.0`` -> ``2`` (JSON Schema counts it as an integer); anything else unchanged."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Caption = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_CAPTION_CHARS),
    AfterValidator(str.strip),
    Field(description="The caption, 1 to 1000 characters (surrounding whitespace is ignored). "
                      "A caption with no word in the model's vocabulary is refused (422 unknown_words).",
          examples=["this bird is red with white wings and a short beak"]),
]
WholeNumber = BeforeValidator(_whole_number)
Truncation = Annotated[
    float | None,
    Field(default=None, gt=0, le=1,
          description="Draw the noise from a normal truncated to [-2, 2] and scaled by this value, as DF-GAN "
                      "samples (it uses 0.88); 1: off. Null: the server's default (attngan serve --truncation)."),
]
MAX_CANDIDATES = 64
Candidates = Annotated[
    int | None,
    Field(default=None, ge=1, le=MAX_CANDIDATES,
          description=f"Draw each image this many times (1..{MAX_CANDIDATES}) and keep the one the model's DAMSM "
                      "matches best with the caption; 1: off. Null: the server's default (attngan serve "
                      "--candidates, else the model's own)."),
    WholeNumber,
]
Seed = Annotated[
    int | None,
    Field(default=None, ge=0, le=MAX_SEED,
          description="Base seed: image j uses seed + j. Null draws one (returned in the response)."),
    WholeNumber,
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class GenerateRequestBase(_Strict):
    """Body of ``POST /v1/generate``."""

    caption: Caption
    seed: Seed = None
    truncation: Truncation = None
    candidates: Candidates = None
    include_attention: bool = Field(True, description="Return the word attention maps of every refinement stage.")


class ExplainRequestBase(_Strict):
    """Body of ``POST /v1/explain``: one image, with the model's intermediate values."""

    caption: Caption
    seed: Seed = None
    truncation: Truncation = None
    candidates: Candidates = None


class BirdRequest(_Strict):
    """Body of the original demo's ``POST /api/v1.0/bird``."""

    caption: Caption
    seed: Seed = None


class GenerateBody(Protocol):
    """What a generate request model of :func:`request_models` holds (its class is built at run
    time, for the server's limits)."""

    caption: str
    seed: int | None
    truncation: float | None
    candidates: int | None
    include_attention: bool
    num_images: int
    stages: int | None


class ExplainBody(Protocol):
    """What an explain request model of :func:`request_models` holds."""

    caption: str
    seed: int | None
    truncation: float | None
    candidates: int | None
    stages: int | None


def request_models(max_images: int, num_stages: int) -> tuple[type[GenerateRequestBase], type[ExplainRequestBase]]:
    """The generate and explain request models for this server's limits."""
    stages_field = (
        Annotated[int | None, WholeNumber],
        Field(None, ge=1, le=num_stages, description=f"Stop after this many stages (1..{num_stages}); null: all."),
    )
    generate = create_model(
        "GenerateRequest",
        __base__=GenerateRequestBase,
        num_images=(Annotated[int, WholeNumber], Field(1, ge=1, le=max_images, description=f"Images to generate (1..{max_images}).")),
        stages=stages_field,  # type: ignore[arg-type]  # pydantic's stub types field definitions as TypeForm, which mypy does not see an Annotated[...] as
    )
    explain = create_model("ExplainRequest", __base__=ExplainRequestBase,
                           stages=stages_field)  # type: ignore[arg-type]  # as above
    return generate, explain


# ---------------------------------------------------------------------------- responses
class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable error code, e.g. 'invalid_value', 'unknown_words'.")
    message: str
    field: str | None = Field(None, description="The request field at fault, if any.")
    words: list[str] | None = Field(None, description="For 'unknown_words': the caption's words.")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ModelRef(BaseModel):
    name: str
    hash: str


class StageImage(BaseModel):
    stage: int = Field(description="1-based stage number.")
    size: int = Field(description="Width and height in pixels.")
    id: str = Field(description="Id for GET /v1/images/{id}.png (kept for a while in a bounded cache).")
    url: str
    png_base64: str


class WordMap(BaseModel):
    word: str
    png_base64: str = Field(description="RGBA heat map of this word's attention, to lay over the stage image.")


class StageAttention(BaseModel):
    stage: int = Field(description="The stage whose image this attention produced.")
    size: int = Field(description="Resolution of the attention map.")
    words: list[WordMap]


class GeneratedImage(BaseModel):
    id: str = Field(description="Id of the last stage's image.")
    url: str
    seed: int
    stages: list[StageImage]
    attention: list[StageAttention]


class Timing(BaseModel):
    queue_ms: float
    inference_ms: float


class GenerateResponse(BaseModel):
    caption: str
    tokens: list[str] = Field(description="The words the model used, in order.")
    dropped: list[str] = Field(description="Words not in the vocabulary (ignored).")
    truncated: list[str] = Field(description="Known words beyond the model's maximum caption length (ignored).")
    seed: int = Field(description="Base seed; image j used seed + j.")
    model: ModelRef
    settings: dict[str, Any]
    timing_ms: float = Field(description="Time spent on the server, in milliseconds.")
    timing: Timing
    images: list[GeneratedImage]


class BirdResponse(BaseModel):
    """The original demo's reply shape: ``images`` holds one base64 PNG per stage."""

    caption: str
    images: list[str] = Field(description="Base64 PNG of every stage, smallest first.")
    seed: int
    tokens: list[str]
    dropped: list[str]
    model: ModelRef
    bird: dict[str, Any] = Field(description="The original reply's keys: small, medium, large, map1, map2 "
                                             "(base64 PNG or null), caption, elapsed (seconds).")


class ModelArchitecture(BaseModel):
    """The loaded model's sizes, for the explain page to state before any run."""

    rnn: str = Field(description="Recurrent cell of the text encoder ('lstm' or 'gru').")
    bidirectional: bool
    word_embedding_dim: int = Field(description="Size of the word embeddings the RNN reads.")
    text_dim: int = Field(description="D: size of every word feature and of the sentence feature.")
    condition_dim: int = Field(description="Size of the condition c sampled by conditioning augmentation.")
    noise_dim: int = Field(description="Size of the noise z.")
    channels: int = Field(description="Feature width of the refinement stages.")
    variant: str = Field(description="'multi_stage' (AttnGAN) or 'dcgan' (one image from the last stage).")
    damsm: bool = Field(description="True when the model folder holds the DAMSM image encoder.")
    image_encoder: str | None = Field(None, description="Kind of the DAMSM image encoder ('inception', 'light').")


class ModelInfo(BaseModel):
    name: str
    hash: str
    stages: int
    sizes: list[int] = Field(description="Image size of every stage.")
    attention_sizes: list[int] = Field(description="Attention map size of every refinement stage.")
    vocabulary_size: int
    max_words: int
    max_images: int
    device: str
    precision: str
    example_captions: list[str] = Field(
        description="Captions the model was trained to draw (from its folder's config.json); may be empty.")
    truncation: float = Field(description="The truncation of requests that send none: attngan serve --truncation, "
                                          "else the model's own (its config.json's metadata.truncation), else 1 (off).")
    candidates: int = Field(description="Candidates drawn per image, the one the model's DAMSM matches best with "
                                        "the caption kept, for requests that send none: attngan serve --candidates, "
                                        "else the model's own (metadata.candidates), else 1 (off).")
    architecture: ModelArchitecture


class Health(BaseModel):
    status: str
    detail: str | None = None


class Vector(BaseModel):
    values: list[float]
    norm: float


class TextEncoderExplain(BaseModel):
    tokens: list[str]
    word_features_png: str = Field(description="Heat map, one row per word, one column per feature (blue<0<red).")
    word_features_shape: list[int] = Field(description="[words, features]")
    word_norms: list[float]
    sentence: Vector


class ConditioningExplain(BaseModel):
    mu: Vector
    sigma: Vector
    condition: Vector = Field(description="c = mu + sigma * eps, the sampled condition.")
    noise_dim: int


class DamsmExplain(BaseModel):
    available: bool = Field(description="False when the model folder has no DAMSM image encoder.")
    sentence_image_cosine: float | None = None
    word_region_score: float | None = None
    region_size: int | None = None
    words: list[WordMap] = Field(default_factory=list, description="Each word's attention over the image regions.")


class ExplainResponse(BaseModel):
    caption: str
    dropped: list[str]
    truncated: list[str]
    seed: int
    truncation: float = Field(description="The truncation the noise was drawn with (1: none).")
    candidates: int = Field(description="The candidates the image was chosen among (1: none).")
    model: ModelRef
    text_encoder: TextEncoderExplain
    conditioning: ConditioningExplain
    stages: list[StageImage]
    attention: list[StageAttention]
    damsm: DamsmExplain
    timing_ms: float
