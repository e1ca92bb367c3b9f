"""The cost of best-of-K candidates: milliseconds an image for the bundled (or a given) model at each
K, side by side in one run, with the machine it ran on.

    .venv/bin/python benchmarks/bench_candidates.py [--model DIR] [--values 1,8] [--threads 1]

Each K draws ``--images`` images (one caption repeated, batch 16) after one warm-up call; the
figure is the best of ``--repeats`` timed calls. Run it alone: a training run beside it makes the
figures worthless (``machine.training_job_running`` says whether one was).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from run import machine_info  # benchmarks/run.py, beside this file

from attngan.inference.pipeline import AttnGANPipeline

CAPTION = "a large purple star on the right and a small green triangle at the top"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model folder [the bundled model]")
    parser.add_argument("--values", default="1,8", help="numbers of candidates, comma-separated")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = AttnGANPipeline.from_pretrained(args.model)
    captions = [CAPTION] * args.images
    figures = {}
    for k in (int(v) for v in args.values.split(",")):
        pipe(captions, seed=0, candidates=k, batch_size=16)  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            pipe(captions, seed=0, candidates=k, batch_size=16)
            times.append(time.perf_counter() - start)
        figures[k] = 1000 * min(times) / args.images
        print(f"candidates {k:<3d} {figures[k]:.1f} ms an image")
    print(json.dumps({"model": pipe.name, "truncation": pipe.truncation, "ms_per_image": figures,
                      "machine": machine_info()}))


if __name__ == "__main__":
    main()
