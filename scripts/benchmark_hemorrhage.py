#!/usr/bin/env python
"""Benchmark: the whole `segtransfer hemorrhage segment` pipeline against the bare model forward pass
over the same slices, on a 512x512x40 head CT (phantom), with the shipped model.

Prints both times side by side, the pipeline overhead ratio (target: under 15 %) and whether the
whole command stays under 10 s.

    python scripts/benchmark_hemorrhage.py [--slices 40] [--size 512] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "SegTransfer"))


def main() -> None:
    import numpy as np
    import SimpleITK as sitk
    import torch

    from segtransfer.cli import main as cli_main
    from segtransfer.hemorrhage import default_model_path, preprocess
    from segtransfer.hemorrhage.infer import predict_slices
    from segtransfer.hemorrhage.preprocess import model_input
    from segtransfer.models import load_network
    from segtransfer.phantoms import head_ct

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--slices", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    fov = 230.0
    h = head_ct(seed=7, site="site_a", spacing=(fov / args.size, fov / args.size, 150.0 / args.slices))
    image = h.image
    print(f"head CT {image.GetSize()} at {tuple(round(s, 3) for s in image.GetSpacing())} mm")
    network, package = load_network(default_model_path())
    pre = preprocess(image)
    brain = sitk.GetArrayFromImage(pre.brain).astype(bool)
    x = model_input(sitk.GetArrayFromImage(pre.image), brain, package.description["input"]["intensity"])
    x = x[np.flatnonzero(brain.any(axis=(1, 2)))]
    bare, whole = [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ct.nii.gz"
        sitk.WriteImage(image, str(path))
        for r in range(args.repeats):
            t0 = time.perf_counter()
            predict_slices(network, x, package.description["output"]["threshold"])
            bare.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            code = cli_main(["hemorrhage", "segment", str(path), "--out", str(Path(tmp) / f"out{r}")])
            whole.append(time.perf_counter() - t0)
            assert code == 0
    b, w = min(bare), min(whole)
    print(f"{'':34}{'seconds (best of %d)' % args.repeats:>22}")
    print(f"{'bare model forward (same slices)':34}{b:>22.2f}")
    print(f"{'whole segment command':34}{w:>22.2f}")
    print(f"pipeline overhead: {100 * (w - b) / b:.1f} % of the forward pass (ratio {w / b:.2f}); target < 15 %")
    print(f"whole command under 10 s: {'yes' if w < 10 else 'no'}")


if __name__ == "__main__":
    main()
