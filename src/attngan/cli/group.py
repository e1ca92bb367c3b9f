"""The ``attngan`` command group and the options several sub-commands share."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..errors import SettingError
from ..version import __version__
from .flags import message

if TYPE_CHECKING:
    from ..inference.pipeline import AttnGANPipeline


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="attngan")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """AttnGAN text-to-image: convert, train, evaluate, generate, serve."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


F = TypeVar("F", bound=Callable[..., object])


def model_options(dest: str = "model") -> Callable[[F], F]:
    """``--model PATH|ORG/NAME`` (into parameter ``dest``) and ``--revision``: a model folder or a
    Hugging Face Hub repo id, resolved by :func:`attngan.hub.resolve_model_folder`."""

    def decorate(f: F) -> F:
        f = click.option("--revision", metavar="REV",
                         help="Branch, tag or commit of the Hub repo named by --model [main].")(f)
        return click.option("--model", dest, metavar="PATH|ORG/NAME",
                            help="Model folder, or a Hugging Face Hub repo id (org/name, from the Hub's cache or "
                                 "downloaded) [the bundled model].")(f)

    return decorate


TRUNCATION_HELP = ("Draw the noise from a normal truncated to [-2, 2] and scaled by this value, as DF-GAN samples "
                   "(it uses 0.88): less varied, more typical images. 1.0: off. [the model's own: its config.json's "
                   "metadata.truncation, else 1.0]")


def truncation_option(f: F) -> F:
    """``--truncation T`` in (0, 1] (``generate``, ``evaluate``, ``serve``)."""
    return click.option("--truncation", default=None, type=click.FloatRange(0, 1, min_open=True),
                        help=TRUNCATION_HELP)(f)


CANDIDATES_HELP = ("Draw each image this many times and keep the one the model's own DAMSM encoders match best with "
                   "its caption (image code against sentence, the score R-precision ranks by). 1: off. [the model's "
                   "own: its config.json's metadata.candidates, else 1]")


def candidates_option(f: F) -> F:
    """``--candidates K`` >= 1 (``generate``, ``evaluate``, ``explain``, ``serve``, ``tune-truncation``)."""
    return click.option("--candidates", default=None, type=click.IntRange(min=1), help=CANDIDATES_HELP)(f)


def pipeline_options(f: F) -> F:
    """``--precision``, ``--exact``, ``--backend``, ``--onnx-dir``, ``--truncation`` and ``--candidates``:
    how a pipeline generates (``generate`` and ``evaluate`` alike, so a score is of what one runs)."""
    f = candidates_option(f)
    f = truncation_option(f)
    f = click.option("--onnx-dir", type=click.Path(file_okay=False),
                     help="ONNX folder (from export-onnx) for --backend onnx.")(f)
    f = click.option("--backend", type=click.Choice(["fast", "reference", "onnx"]), default="fast", show_default=True,
                     help="fast: the fused twins of the modules (fp32 or bf16); reference: the modules as they are "
                          "(fp32); onnx: ONNX Runtime, exported to the cache ($ATTNGAN_CACHE/onnx) on first use.")(f)
    f = click.option("--exact", is_flag=True, help="The reference modules: the same as --backend reference.")(f)
    return click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
                        help="auto: bf16 where the hardware has native bf16 arithmetic, else fp32.")(f)


def load_pipeline(model: str | None, device: Any, precision: str, backend: str, onnx_dir: str | None,
                  exact: bool = False, revision: str | None = None, truncation: float | None = None,
                  candidates: int | None = None) -> AttnGANPipeline:
    """The pipeline of ``model`` (None: the bundled one) as :func:`pipeline_options` choose; errors
    name the flag at fault."""
    import torch

    from ..inference.pipeline import AttnGANPipeline

    if str(device) == "cuda" and not torch.cuda.is_available():
        raise click.ClickException("--device cuda: no CUDA device is available")
    if backend == "onnx" and precision == "bf16":
        raise click.UsageError("--backend onnx runs in fp32; drop --precision bf16")
    if exact and backend not in ("fast", "reference"):
        raise click.UsageError(f"--exact is --backend reference; drop --backend {backend}")
    try:
        return AttnGANPipeline.from_pretrained(model, device=device, precision=precision, backend=backend,
                                               onnx_dir=onnx_dir, exact=exact, revision=revision,
                                               truncation=truncation, candidates=candidates)
    except SettingError as exc:
        if isinstance(exc, FileNotFoundError):
            raise click.ClickException(message(exc)) from None
        raise click.UsageError(message(exc)) from None
    except FileNotFoundError as exc:
        hint = "; pass --model PATH" if model is None else ""
        raise click.ClickException(f"{exc}{hint}") from None
    except (ValueError, ImportError) as exc:
        raise click.ClickException(str(exc)) from None
