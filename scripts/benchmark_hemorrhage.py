#!/usr/bin/env python
"""Benchmark: the whole `segtransfer hemorrhage segment` command against the bare model forward pass
over the same slices, on a 512x512x40 head CT (phantom), with the shipped model or ``--model``.

Numbers, best of --repeats:

* bare model forward: the package's network as loaded (PyTorch's default memory layout) called on
  exactly the 256x256 windows the command feeds it (the windows of the slices it segments, and of
  their mirror images when the package asks for left-right flip averaging, as the shipped one does),
  in the same batches, with nothing else; the windows are recorded during a first, uncounted command
  run, and the bare forward is timed between runs: each run's own baseline is the mean of the bare
  forwards right before and right after it, and the ratio of each run to its baseline is printed too,
  with their median, since the machine's speed drifts between and during runs;
* forward inside the command: the time spent in the network's forward during the command, which runs
  a copy of the network with its batch norms folded into the convolutions and channels-last
  memory layout (see ``segtransfer.hemorrhage.infer.inference_copy``);
* whole command in-process: ``segtransfer hemorrhage segment`` from reading the file to the last
  output written (the CLI's ``main`` called in this process, after the imports);
* cold command: ``python -m segtransfer hemorrhage segment`` in a fresh process (interpreter start
  and the torch/MONAI imports included), the time a user waits.

Prints the ratio whole / bare forward (target: pipeline overhead under 15 %, ratio below 1.15), the
ratio to the forward inside the command, and whether the cold command stays under 10 s.

    python scripts/benchmark_hemorrhage.py [--slices 40] [--size 512] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "SegTransfer"
sys.path.insert(0, str(SOURCE))


def head_ct_512(size: int, slices: int):
    """A phantom head CT on a ``size`` x ``size`` x ``slices`` axial grid: 230 mm field of view,
    slices covering the head from the skull base to the vertex (about 4 mm at 40 slices)."""
    import SimpleITK as sitk

    from segtransfer.phantoms import head_ct

    fov, height = 230.0, 160.0
    spacing = (fov / size, fov / size, height / slices)
    h = head_ct(seed=7, site="site_a", spacing=(0.9, 0.9, 2.0))
    reference = sitk.Image([size, size, slices], sitk.sitkFloat32)
    reference.SetSpacing(spacing)
    centre = h.image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2.0 for n in h.image.GetSize()])
    reference.SetOrigin(tuple(c - (n - 1) * s / 2.0 for c, n, s in zip(centre, (size, size, slices), spacing)))
    return sitk.Resample(h.image, reference, sitk.Transform(), sitk.sitkLinear, -1000.0, sitk.sitkInt16)


def bare_forward(network, batches) -> float:
    """Seconds of ``network``'s forward pass (the package's network as loaded, in eval mode) over ``batches``
    (the windows the command fed its copy, in the same batches), with nothing else."""
    import torch

    network.eval()
    with torch.inference_mode():
        t0 = time.perf_counter()
        for batch in batches:
            network(batch)
        return time.perf_counter() - t0


def main() -> None:
    import SimpleITK as sitk
    import torch

    import segtransfer.models as models
    from segtransfer.cli import main as cli_main

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="in-plane size in voxels (default 512)")
    parser.add_argument("--slices", type=int, default=40, help="number of axial slices (default 40)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each measurement; the best is shown (default 5)")
    parser.add_argument("--model", type=Path, help="model package (default: the shipped model)")
    args = parser.parse_args()
    model = ["--model", str(args.model)] if args.model else []

    record = {"seconds": 0.0, "windows": [], "capture": True}  # outside the module: the command runs a copy of it

    class TimedNetwork(torch.nn.Module):
        """The loaded network, unchanged, with the seconds spent in its forward pass added to ``record``
        (and, while ``record["capture"]``, the input windows kept)."""

        def __init__(self, network: torch.nn.Module):
            super().__init__()
            self.network = network

        def forward(self, x):
            t0 = time.perf_counter()
            y = self.network(x)
            record["seconds"] += time.perf_counter() - t0
            if record["capture"]:
                record["windows"].append(x.clone())
            return y

    loaded: list[torch.nn.Module] = []
    load_network = models.load_network

    def load_timed(*a, **k):
        network, package = load_network(*a, **k)
        loaded.append(network)
        return TimedNetwork(network).eval(), package

    models.load_network = load_timed  # the command looks it up at run time
    image = head_ct_512(args.size, args.slices)
    print(f"head CT {image.GetSize()} at {', '.join(f'{s:.3f}' for s in image.GetSpacing())} mm, "
          f"{torch.get_num_threads()} torch threads")
    whole, inside, bare, cold, before = [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ct.nii.gz"
        sitk.WriteImage(image, str(path))
        for r in range(-1, args.repeats):  # run -1 records the windows and warms up; it is not counted
            record["seconds"] = 0.0
            t0 = time.perf_counter()
            code = cli_main(["hemorrhage", "segment", str(path), "--out", str(Path(tmp) / f"out{r + 1}"), *model])
            seconds = time.perf_counter() - t0
            if code != 0:
                sys.exit(f"the segment command failed with exit code {code}")
            record["capture"] = False
            if r < 0:
                before.append(bare_forward(loaded[0], record["windows"]))  # the baseline of the first counted run
                continue
            whole.append(seconds)
            inside.append(record["seconds"])
            # each run's baseline: the mean of the bare forwards timed right before and right after it, so that
            # a drift of the machine's speed during the run moves both alike
            after = bare_forward(loaded[0], record["windows"])
            bare.append(0.5 * (before[-1] + after))
            before.append(after)
        batches = record["windows"]
        for r in range(args.repeats):
            t0 = time.perf_counter()
            run = subprocess.run([sys.executable, "-m", "segtransfer", "hemorrhage", "segment", str(path), "--out", str(Path(tmp) / f"cold{r}"), *model],
                                 capture_output=True, text=True, env={**__import__("os").environ, "PYTHONPATH": str(SOURCE)})
            cold.append(time.perf_counter() - t0)
            if run.returncode != 0:
                sys.exit(f"the cold segment command failed: {run.stderr.strip()}")
    windows = sum(int(batch.shape[0]) for batch in batches)
    w, f, i, c = min(whole), min(bare), min(inside), min(cold)
    print(f"{'':48}{'seconds (best of %d)' % args.repeats:>22}")
    print(f"{'bare model forward (%d windows of 256x256)' % windows:48}{f:>22.2f}")
    print(f"{'forward inside the command (inference copy)':48}{i:>22.2f}")
    print(f"{'whole command, in-process (read .. write)':48}{w:>22.2f}")
    print(f"{'whole command, cold (new Python process)':48}{c:>22.2f}")
    pairs = sorted(a / b for a, b in zip(whole, bare))
    overhead = 100 * (w - f) / f
    said = (f"pipeline overhead {overhead:.1f} % of the bare forward pass" if overhead >= 0 else
            f"the whole command takes {-overhead:.1f} % less than the bare forward pass: its copy of the network is faster")
    print(f"ratio whole / bare forward: {w / f:.2f} ({said}; target: overhead < 15 %); "
          f"run by run {', '.join(f'{q:.2f}' for q in pairs)} (median {statistics.median(pairs):.2f})")
    print(f"ratio whole / forward inside the command: {w / i:.2f} (the command's own work besides the network: {w - i:.2f} s)")
    print(f"ratio cold / bare forward: {c / f:.2f} (adds interpreter start-up and the torch/MONAI imports)")
    print(f"cold command under 10 s: {'yes' if c < 10 else 'no'}")


if __name__ == "__main__":
    main()
