"""``run.speed.compile``: the training step's modules and loss terms through ``torch.compile``
(inductor; on a CPU it writes C++ kernels and builds them with the system's compiler).

* Shapes are fixed (``dynamic=False``): a run's batch is constant (:class:`~.loop.BatchStream`
  yields full batches only) and captions are padded to ``max_words``, so each compiled function
  is built once per module and never again during the run.
* The compiled artefacts (inductor's FX-graph cache and AOT-autograd cache) live in
  ``inductor/`` under the cache root (:func:`attngan.cache.cache_dir`), so that a resumed run,
  a second process of a ``torchrun`` run and the next run of the same configuration load them
  instead of compiling again; ``TORCHINDUCTOR_CACHE_DIR``, when set, wins.
* Where no compiler works (none installed, a failed build), :func:`compiler_works` logs one
  warning and the step runs eagerly: the same computation, only slower.

What it computes is the eager step to float rounding (inductor reorders sums and fuses
elementwise operations): ``tests/test_compiled_step.py`` states and holds the tolerance.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from ..cache import cache_dir

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


def compile_cache_dir() -> Path:
    """Where compiled training kernels are kept: ``$TORCHINDUCTOR_CACHE_DIR`` when set, else
    ``inductor`` under the cache root (:func:`attngan.cache.cache_dir`). (Importing ``torch._dynamo``
    sets the variable to inductor's own default, a folder under /tmp; that value counts as unset.)"""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    given = os.environ.get(CACHE_ENV)
    if given and os.path.abspath(given) != os.path.abspath(default_cache_dir()):
        return Path(given)
    return cache_dir("inductor")


def use_compile_cache() -> Path:
    """Point inductor's on-disk caches at :func:`compile_cache_dir` (before anything is compiled
    in this process; inductor reads the folder from the environment) and turn them on."""
    folder = compile_cache_dir()
    os.environ[CACHE_ENV] = str(folder)
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    inductor_config.fx_graph_cache = True
    functorch_config.enable_autograd_cache = True
    return folder


@functools.cache
def compiler_works() -> bool:
    """Whether ``torch.compile`` builds and runs a kernel here (a small function, compiled once per
    process and checked against eager). Logs one warning, and returns False, when it does not."""
    folder = use_compile_cache()

    def probe(x: torch.Tensor) -> torch.Tensor:
        return x[:, :4] * torch.sigmoid(x[:, 4:])

    x = torch.linspace(-2.0, 2.0, 64).reshape(8, 8)
    try:
        compiled = torch.compile(probe, dynamic=False, fullgraph=True)
        if not torch.allclose(compiled(x), probe(x), rtol=1e-6, atol=1e-6):
            raise RuntimeError("the compiled probe computes another result")
    except Exception as exc:  # any failure of the tool chain means: run eagerly
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("run.speed.compile: torch.compile does not work here (%s: %s); the training step runs "
                    "eagerly (same result, slower)", type(exc).__name__, reason[:300])
        return False
    log.info("run.speed.compile: compiled kernels are cached in %s", folder)
    return True


def compile_module(module: nn.Module) -> nn.Module:
    """Compile ``module``'s forward in place (its parameters, buffers, state-dict keys and hooks
    are unchanged; a ``DistributedDataParallel`` wrapper calls the compiled forward). Returns it."""
    module.compile(backend="inductor", dynamic=False)
    return module


def compile_function(fn: F) -> F:
    """``fn`` compiled with fixed shapes (a pure tensor function such as a loss)."""
    # torch.compile's stub returns a callable of unknown signature; the compiled function keeps fn's
    return torch.compile(fn, backend="inductor", dynamic=False)  # type: ignore[return-value]


def cache_counters() -> dict[str, int]:
    """How many compiled graphs this process took from the on-disk caches and how many it had to
    build: ``{"fx_hits", "fx_misses", "aot_hits", "aot_misses"}``."""
    from torch._dynamo.utils import counters

    return {"fx_hits": counters["inductor"]["fxgraph_cache_hit"],
            "fx_misses": counters["inductor"]["fxgraph_cache_miss"],
            "aot_hits": counters["aot_autograd"]["autograd_cache_hit"],
            "aot_misses": counters["aot_autograd"]["autograd_cache_miss"]}
