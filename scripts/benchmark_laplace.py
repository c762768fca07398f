#!/usr/bin/env python
"""Benchmark: the shipped Laplace solver (preconditioned conjugate gradients) against the plain
Jacobi iteration of the source study, on the same finite-volume system and to the same tolerance.

Prints time, iterations and peak memory of each, side by side, and their ratios.  Each solver runs
in its own process so peak memory (ru_maxrss growth) is measured separately.

    python scripts/benchmark_laplace.py                # spherical shell r 20-30 mm at 1 mm
    python scripts/benchmark_laplace.py --spacing 0.7 --rtol 1e-6
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "SegTransfer"))


def _run(solver: str, args: dict, queue) -> None:
    from segtransfer.phantoms import spherical_shell
    from segtransfer.thickness.boundaries import classify
    from segtransfer.thickness.laplace import assemble, solve_laplace, solve_laplace_jacobi

    labels, _ = spherical_shell(args["r_inner"], args["r_outer"], spacing=(args["spacing"],) * 3)
    b = classify(labels.array(), (args["spacing"],) * 3)
    unknowns = assemble(b).index.size
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    solve = solve_laplace if solver == "cg" else solve_laplace_jacobi
    field = solve(b, rtol=args["rtol"])
    peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024.0
    queue.put({"solver": solver, "seconds": field.seconds, "iterations": field.iterations, "residual": field.residual,
               "peak_mb": peak_mb, "unknowns": unknowns})


def measure(solver: str, args: dict) -> dict:
    queue = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=_run, args=(solver, args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--r-inner", type=float, default=20.0, help="inner radius, mm (default 20)")
    parser.add_argument("--r-outer", type=float, default=30.0, help="outer radius, mm (default 30)")
    parser.add_argument("--spacing", type=float, default=1.0, help="isotropic voxel spacing, mm (default 1)")
    parser.add_argument("--rtol", type=float, default=1e-6, help="relative residual both solvers reach (default 1e-6)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = vars(parser.parse_args())
    cg = measure("cg", args)
    jacobi = measure("jacobi", args)
    if args["json"]:
        print(json.dumps({"cg": cg, "jacobi": jacobi}, indent=2))
        return
    print(f"Laplace solve on a spherical shell {args['r_inner']:g}-{args['r_outer']:g} mm at {args['spacing']:g} mm "
          f"({cg['unknowns']} wall voxels), relative residual {args['rtol']:g}")
    print(f"{'':22}{'CG (shipped)':>15}{'Jacobi (baseline)':>20}{'ratio Jacobi/CG':>18}")
    for key, label, fmt in (("seconds", "time (s)", "{:.3f}"), ("iterations", "iterations", "{:d}"), ("peak_mb", "peak memory (MB)", "{:.1f}")):
        ratio = jacobi[key] / cg[key] if cg[key] else float("nan")
        print(f"{label:22}{fmt.format(cg[key]):>15}{fmt.format(jacobi[key]):>20}{ratio:>18.1f}")
    print(f"{'final residual':22}{cg['residual']:>15.2e}{jacobi['residual']:>20.2e}")


if __name__ == "__main__":
    main()
