#!/usr/bin/env python
"""Benchmark: time per epoch of the cardiac training loop against a bare PyTorch loop over the same
model and the same data (labelled phases of phantom sparse-4D pairs on the model grid).

* bare loop: for each mini-batch of a fixed random order: ``zero_grad``, forward, MONAI ``DiceLoss``,
  ``backward``, ``step``, nothing else;
* training step: :func:`segtransfer.cardiac.train.train_epoch`, the per-epoch function every loop
  (single-site and multi-site) calls;
* full epoch: what :func:`~segtransfer.cardiac.train.train_cardiac` does per epoch besides
  validation: the training step, the learning-rate decay, and the atomic checkpoint (weights, Adam
  state, best weights, JSON state, CSV log).

Each is timed over the same epochs (median of --repeats, interleaved so machine load affects all
alike).  Prints seconds per epoch and the ratios to the bare loop; the target is an overhead under
10 % (ratio below 1.10).

    python scripts/benchmark_training.py [--cases 4] [--spacing 4] [--batch-size 2] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "SegTransfer"
sys.path.insert(0, str(SOURCE))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=4, help="phantom studies (5 labelled phases each)")
    parser.add_argument("--spacing", type=float, default=4.0, help="model grid spacing in mm")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, help="PyTorch CPU threads (1 when other jobs share the cores)")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from segtransfer.cardiac.data import case_arrays, stack_cases, total_stride
    from segtransfer.cardiac.network import choose_device, description
    from segtransfer.cardiac.phantom_data import phantom_pair
    from segtransfer.cardiac.train import dice_loss, make_optimizer, train_epoch
    from segtransfer.checkpoints import history_csv, save_checkpoint
    from segtransfer.models import build_network

    device = choose_device(args.device)
    desc = description(spacing_mm=(args.spacing,) * 3)
    with tempfile.TemporaryDirectory() as tmp:
        cases = [case_arrays(phantom_pair(Path(tmp) / f"c{k}", 10 + k, "site_a", "dense", spacing_mm=args.spacing), desc)
                 for k in range(args.cases)]
        data = stack_cases(cases, total_stride(desc))
        print(f"data: {len(data)} labelled phases of {tuple(data.x.shape[2:])} voxels (z, y, x), batch {args.batch_size}, device {device}")
        torch.manual_seed(0)
        network = build_network(desc).to(device)
        optimizer = make_optimizer(network, 1e-3)
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, 0.9)
        loss_fn = dice_loss()
        x, y = data.x.to(device), data.y.to(device)

        def bare(epoch: int) -> None:
            network.train()
            order = torch.from_numpy(np.random.default_rng([0, epoch]).permutation(len(x)))
            for start in range(0, len(order), args.batch_size):
                idx = order[start:start + args.batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(network(x[idx]), y[idx])
                loss.backward()
                optimizer.step()

        def step(epoch: int) -> None:
            train_epoch(network, optimizer, data, loss_fn=loss_fn, batch_size=args.batch_size, rng=np.random.default_rng([0, epoch]), device=device)

        history: list[dict] = []
        best = {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}

        def full(epoch: int) -> None:
            loss = train_epoch(network, optimizer, data, loss_fn=loss_fn, batch_size=args.batch_size, rng=np.random.default_rng([0, epoch]),
                               device=device)
            scheduler.step()
            history.append({"epoch": epoch, "lr": scheduler.get_last_lr()[0], "train_loss": loss})
            save_checkpoint(Path(tmp) / "ck", network, optimizer, {"epoch": epoch, "history": history, "scheduler": scheduler.state_dict()},
                            best, history_csv(history, ["epoch", "lr", "train_loss"]))

        bare(0)  # warm-up (allocator, MONAI imports)
        times: dict[str, list[float]] = {"bare": [], "step": [], "full": []}
        for r in range(args.repeats):
            for name, fn in (("bare", bare), ("step", step), ("full", full)):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                fn(r + 1)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"bare PyTorch loop:        {med['bare']:.3f} s/epoch")
    print(f"train_epoch:              {med['step']:.3f} s/epoch  ratio {med['step'] / med['bare']:.3f}")
    print(f"epoch with checkpoint:    {med['full']:.3f} s/epoch  ratio {med['full'] / med['bare']:.3f}")
    ok = med["full"] / med["bare"] < 1.10
    print(f"overhead target (< 10 %): {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
