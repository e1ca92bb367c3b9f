"""The ``attngan`` command group and the options several sub-commands share."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import click

from .. import __version__


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
