"""Multi-process training with PyTorch's own engine (``torchrun``: gloo on CPU, NCCL on GPU).

Every loss is computed on the *global* batch: per-sample outputs are all-gathered with
gradients and BatchNorm uses global batch statistics, so N processes with batch B/N
compute what one process computes with batch B (to float tolerance). DDP averages
gradients over processes, so each process scales its loss by the world size.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def pick_device(preference: str) -> torch.device:
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("run.device is cuda but no CUDA device is available")
    return torch.device(preference)


def init_distributed(device_preference: str = "auto") -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (if any)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(device_preference)
    if world <= 1:
        return DistInfo(device=device)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    log.info("process %d of %d: node %s, local rank %d, %s", rank, world, os.environ.get("GROUP_RANK", "?"),
             local_rank, device)
    return DistInfo(rank, world, local_rank, device)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _GatherRows(torch.autograd.Function):
    """All-gather along dim 0; the backward sums every process's gradient for the local
    rows (made contiguous first: collectives on strided views send the wrong memory)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.contiguous()
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor)
        ctx.rows = tensor.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        start = dist.get_rank() * ctx.rows
        return grad[start:start + ctx.rows]


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` ``[b, ...]`` (same ``b`` on every process) from all processes
    along dim 0, with gradients flowing back to each process's own rows. Identity in a
    single process."""
    if world_size() == 1:
        return tensor
    if not tensor.requires_grad:
        parts = [torch.empty_like(tensor.contiguous()) for _ in range(world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=0)
    return _GatherRows.apply(tensor)


def agree(flag: bool) -> bool:
    """True on every process when ``flag`` is True on any (an all-reduce; the flag itself in one process)."""
    return bool(agree_max(1 if flag else 0))


def agree_max(value: int) -> int:
    """The largest of every process's ``value`` (an all-reduce; ``value`` itself in one process).
    Every process must call it at the same point, as any collective."""
    if world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.int32, device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def gather_objects(obj: object) -> list[object]:
    """Every process's ``obj`` (picklable), in rank order, on every process; ``[obj]`` in one process."""
    if world_size() == 1:
        return [obj]
    found: list[object] = [None] * world_size()
    dist.all_gather_object(found, obj)
    return found


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def _collective_device() -> torch.device:
    """Where this process's collectives run: its CUDA device under NCCL, the CPU under gloo."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def mean_of_logs(values: dict[str, float]) -> dict[str, float]:
    """Each value averaged over processes (one all-reduce; every process must call it with the same
    keys); unchanged in a single process."""
    if world_size() == 1 or not values:
        return dict(values)
    t = torch.tensor(list(values.values()), dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t)
    return {k: float(v) / world_size() for k, v in zip(values, t.cpu().tolist(), strict=True)}


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics cover the batch of every process (works on CPU,
    unlike ``SyncBatchNorm``); identical to BatchNorm in a single process or in eval mode."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or world_size() == 1:
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = [0] + list(range(2, x.dim()))
        count = torch.tensor([float(x.numel() // x.shape[1])], device=x.device)
        stats = torch.cat([x.sum(dims), (x * x).sum(dims), count])
        stats = all_reduce(stats)
        c = x.shape[1]
        n = stats[-1]
        mean = stats[:c] / n
        var = stats[c:2 * c] / n - mean * mean
        with torch.no_grad():
            if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
                tracked = self.num_batches_tracked
                assert tracked is not None  # track_running_stats
                tracked += 1
                momentum = self.momentum if self.momentum is not None else 1.0 / float(tracked)
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_((var * n / (n - 1)).detach(), momentum)
        shape = [1, c] + [1] * (x.dim() - 2)
        out = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {x.dim()}D")


def use_global_batchnorm(module: nn.Module) -> nn.Module:
    """Swap every BatchNorm1d/2d in ``module`` for :class:`GlobalBatchNorm` (same state_dict)."""
    for name, child in module.named_children():
        if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)):
            new = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            new.load_state_dict(child.state_dict())
            new.to(next(iter(child.state_dict().values())).device)
            setattr(module, name, new)
        else:
            use_global_batchnorm(child)
    return module
