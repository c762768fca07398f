#!/usr/bin/env python
"""Benchmark: SegTransfer's exact multi-label closing against SimpleITK's BinaryMorphologicalClosing
(ball kernel, safe border) applied per label.

The test label map is an LV-like truncated ellipsoidal shell (1 blood pool, 2 myocardium) sized to
the volume, with annotation defects: enclosed holes in the pool and a gap between pool and wall.
Each method runs in its own fresh Python process, which reads the label map from a file and is
timed around the closing alone; its peak memory is the rise of the process's resident set size
(VmHWM after the run minus VmRSS before it, from /proc/self/status, the peak counter being reset
through /proc/self/clear_refs after loading), so SimpleITK's C++ allocations are counted.  Both
results are then checked voxel for voxel against an exact Euclidean-ball closing computed by brute
force (SciPy binary dilation then erosion with the explicit ball footprint): for SegTransfer the
closed union of labels, for the baseline each label's closing.

    python scripts/benchmark_closing.py                       # 512 x 512 x 250, radius 5 voxels
    python scripts/benchmark_closing.py --size 256 256 125    # smaller
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _import_core() -> None:
    try:
        import segtransfer  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "SegTransfer"))


def make_labels(size_xyz, seed: int = 0, scale: float = 1.0):
    """LV-like 0/1/2 label map of ``size_xyz`` voxels (SimpleITK image, spacing 0.4 x 0.4 x 0.625 mm)
    with 4 enclosed holes in the pool and a one-voxel gap patch between pool and wall.  ``scale``
    multiplies the shell's size (1: about 40 % of the volume's width; 2.4: it spans the volume)."""
    import numpy as np
    import SimpleITK as sitk

    rng = np.random.default_rng(seed)
    nx, ny, nz = size_xyz
    arr = np.zeros((nz, ny, nx), dtype=np.uint8)
    centre = np.array([nz * 0.5, ny * 0.5, nx * 0.5])
    outer = scale * np.array([0.35 * nz, 0.18 * ny, 0.2 * nx])  # semi-axes z, y, x in voxels
    wall = max(3.0, 0.035 * nx * scale)
    inner = outer - wall
    lo = np.maximum(np.floor(centre - outer).astype(int) - 1, 0)
    hi = np.minimum(np.ceil(centre + outer).astype(int) + 2, [nz, ny, nx])
    z, y, x = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    q_out = ((z - centre[0]) / outer[0]) ** 2 + ((y - centre[1]) / outer[1]) ** 2 + ((x - centre[2]) / outer[2]) ** 2
    q_in = ((z - centre[0]) / inner[0]) ** 2 + ((y - centre[1]) / inner[1]) ** 2 + ((x - centre[2]) / inner[2]) ** 2
    base = z < centre[0] + 0.6 * outer[0]  # basal cut
    box = arr[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    box[(q_out <= 1) & base] = 2
    box[(q_in <= 1) & base] = 1
    # gap: pool voxels next to the wall on one side, mid-ventricle, become background
    near = (q_in <= 1) & (q_in > (1 - 1.5 / inner.min()) ** 2) & base
    side = (x - centre[2]) > 0.5 * inner[2]
    band = np.abs(z - centre[0]) < 0.25 * inner[0]
    box[near & side & band] = 0
    # holes: small blobs well inside the pool
    for _ in range(4):
        c = centre + rng.uniform(-0.4, 0.4, 3) * inner
        r = rng.uniform(1.5, 3.0)
        blob = ((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) <= r * r
        box[blob & (q_in <= 0.6)] = 0
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing((0.4, 0.4, 0.625))
    return image


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def worker(method: str, src: str, dst: str, radius: float) -> dict:
    """Run one method in this process; returns seconds and peak memory rise (MiB)."""
    import numpy as np
    import SimpleITK as sitk

    _import_core()
    from segtransfer.cleanup import close_labels

    image = sitk.ReadImage(src)
    labels = [int(v) for v in np.unique(sitk.GetArrayViewFromImage(image)) if v != 0]
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak resident set size (VmHWM) to the current size
        reset = True
    except OSError:
        reset = False
    before = _rss_kib("VmRSS")
    start = time.perf_counter()
    if method == "segtransfer":
        out = close_labels(image, radius, "voxel").labels.image
    else:
        result = image
        r = int(round(radius))
        for value in labels:  # per label; a closed voxel joins the label only where it was background
            closed = sitk.BinaryMorphologicalClosing(sitk.Equal(image, value), [r] * 3, sitk.sitkBall, 1, True)
            result = sitk.Mask(result, sitk.Not(sitk.And(closed, sitk.Equal(result, 0))), outsideValue=value)
        out = result
    seconds = time.perf_counter() - start
    peak = _rss_kib("VmHWM")
    sitk.WriteImage(out, dst, False)
    return {"seconds": seconds, "peak_mib": (peak - before) / 1024.0, "peak_reset": reset}


def run_worker(method: str, src: str, dst: str, radius: float) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", method, src, dst, str(radius)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{method} worker failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        print(json.dumps(worker(argv[1], argv[2], argv[3], float(argv[4]))))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, nargs=3, default=[512, 512, 250], metavar=("X", "Y", "Z"), help="volume size in voxels")
    p.add_argument("--radius", type=int, default=5, help="ball radius in voxels (default 5)")
    p.add_argument("--repeat", type=int, default=1, help="runs per method; the fastest is reported")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", type=float, default=1.0,
                   help="size of the LV-like shell relative to the default (about 40%% of the width); 2.4 fills the volume")
    args = p.parse_args(argv)

    _import_core()
    import numpy as np
    import SimpleITK as sitk

    from segtransfer.cleanup import make_ball, reference_closing
    from segtransfer.cleanup.arrays import bounding_box

    image = make_labels(args.size, args.seed, args.scale)
    arr = sitk.GetArrayFromImage(image)
    fg_box = bounding_box(arr != 0)
    print(f"label map {' x '.join(map(str, args.size))} voxels ({arr.size / 1e6:.1f} M), labels 1: {int((arr == 1).sum())}, "
          f"2: {int((arr == 2).sum())} voxels; labelled bounding box {' x '.join(str(s.stop - s.start) for s in fg_box[::-1])}")
    print(f"radius {args.radius} voxels; {os.cpu_count()} CPU cores; SimpleITK {sitk.Version.VersionString()} "
          f"with {sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()} threads")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = str(Path(tmp) / "labels.nrrd")
        sitk.WriteImage(image, src, False)
        for method in ("segtransfer", "sitk-per-label"):
            runs = []
            for _ in range(max(args.repeat, 1)):
                dst = str(Path(tmp) / f"{method}.nrrd")
                runs.append(run_worker(method, src, dst, args.radius))
            best = min(runs, key=lambda r: r["seconds"])
            best["output"] = sitk.GetArrayFromImage(sitk.ReadImage(dst))
            results[method] = best

    # exact reference by brute force, in the labelled bounding box padded by the ball (nothing closes outside it)
    ball = make_ball(args.radius, image.GetSpacing(), "voxel")
    start = time.perf_counter()
    box = fg_box

    def exact(mask):
        out = np.zeros(arr.shape, dtype=bool)
        out[box] = reference_closing(mask[box], ball)
        return out

    exact_union = exact(arr != 0)
    ours = results["segtransfer"]["output"]
    ours_ok = np.array_equal(ours != 0, exact_union) and np.array_equal(ours[arr != 0], arr[arr != 0])
    ours_diff = int(np.count_nonzero((ours != 0) != exact_union))
    base = results["sitk-per-label"]["output"]
    base_diffs = {}
    for value in (1, 2):
        base_closed = sitk.GetArrayFromImage(sitk.BinaryMorphologicalClosing(sitk.Equal(image, value), [args.radius] * 3, sitk.sitkBall, 1, True)).astype(bool)
        base_diffs[value] = int(np.count_nonzero(base_closed != exact(arr == value)))
    base_union_diff = int(np.count_nonzero((base != 0) != exact_union))
    ref_seconds = time.perf_counter() - start

    t_ours, t_base = results["segtransfer"]["seconds"], results["sitk-per-label"]["seconds"]
    print()
    print(f"{'method':<44} {'time s':>8} {'peak MiB':>9}  identical to exact ball closing")
    print(f"{'SegTransfer close_labels (exact, multi-label)':<44} {t_ours:8.2f} {results['segtransfer']['peak_mib']:9.1f}  "
          f"{'yes' if ours_ok else 'NO'} (union: {ours_diff} voxels differ)")
    print(f"{'SimpleITK BinaryMorphologicalClosing per label':<44} {t_base:8.2f} {results['sitk-per-label']['peak_mib']:9.1f}  "
          f"{'yes' if not any(base_diffs.values()) else 'NO'} (per label: " + ", ".join(f"label {k}: {v} voxels differ" for k, v in base_diffs.items())
          + f"; union: {base_union_diff} voxels differ)")
    print(f"time ratio SimpleITK / SegTransfer = {t_base / t_ours:.2f} (> 1: SegTransfer faster)")
    print(f"peak memory ratio SimpleITK / SegTransfer = {results['sitk-per-label']['peak_mib'] / max(results['segtransfer']['peak_mib'], 1e-6):.2f}")
    if not all(r["peak_reset"] for r in results.values()):
        print("note: /proc/self/clear_refs was not writable; peak memory includes reading the input")
    print(f"(exact reference by brute force took {ref_seconds:.1f} s)")
    return 0 if ours_ok else 1


if __name__ == "__main__":
    sys.exit(main())
