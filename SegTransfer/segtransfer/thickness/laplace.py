"""Laplace's equation in the myocardium: u = 0 on the endocardium, u = 1 on the epicardium,
no flux across the basal cut / LVOT faces.

Discretisation: cell-centred finite volumes on the wall voxels with the boundary values placed on
the voxel *faces* (half a voxel from the centre), so the level sets u = 0 and u = 1 are the label
boundaries, not the centres of the neighbouring voxels.  The operator is symmetric positive
definite; :func:`solve_laplace` uses preconditioned conjugate gradients (scipy), and
:func:`solve_laplace_jacobi` is the plain Jacobi iteration of the source study (sweeps over the
whole grid), kept only as the benchmark baseline.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import linalg
from threadpoolctl import threadpool_limits

from .boundaries import NEIGHBOURS, Boundaries, adjacent_to, shifted


@dataclass
class LaplaceSystem:
    """The linear system ``A u = b`` on the wall voxels (``index``: flat indices of wall voxels in the
    padded grid, in the order of ``u``)."""

    matrix: sparse.csr_matrix
    rhs: np.ndarray
    index: np.ndarray


@dataclass
class LaplaceField:
    """Solution: ``u`` on the padded ``[z, y, x]`` grid (wall voxels solved; the layer around them holds
    ghost values that put u = 0 / 1 on the boundary faces and mirror u across no-flux faces; NaN far
    away), solver ``iterations``, final relative ``residual`` and ``seconds``."""

    u: np.ndarray
    iterations: int
    residual: float
    seconds: float


def assemble(b: Boundaries) -> LaplaceSystem:
    """Build the finite-volume system on the wall voxels of ``b``."""
    shape = b.wall.shape
    index = np.flatnonzero(b.wall)
    number = np.full(b.wall.size, -1, dtype=np.int64)
    number[index] = np.arange(index.size)
    diag = np.zeros(index.size)
    rhs = np.zeros(index.size)
    rows, cols, vals = [], [], []
    strides = np.array([shape[1] * shape[2], shape[2], 1])
    for axis, step in NEIGHBOURS:
        h2 = b.spacing_zyx[axis] ** 2
        nb = index + step * strides[axis]
        nb_wall = b.wall.ravel()[nb]
        nb_pool = b.pool.ravel()[nb]
        nb_epi = b.epi.ravel()[nb]
        # wall neighbour: coupling 1/h^2
        diag += np.where(nb_wall, 1.0 / h2, 0.0)
        rows.append(np.arange(index.size)[nb_wall])
        cols.append(number[nb[nb_wall]])
        vals.append(np.full(int(nb_wall.sum()), -1.0 / h2))
        # Dirichlet on the face (half a voxel away): 2/h^2, value 0 (endo) or 1 (epi)
        dirichlet = nb_pool | nb_epi
        diag += np.where(dirichlet, 2.0 / h2, 0.0)
        rhs += np.where(nb_epi, 2.0 / h2, 0.0)
        # cut faces: no flux, no term
    rows.append(np.arange(index.size))
    cols.append(np.arange(index.size))
    vals.append(diag)
    matrix = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(index.size, index.size))
    return LaplaceSystem(matrix, rhs, index)


def nearest_defined(wall: np.ndarray, spacing_zyx) -> np.ndarray | None:
    """For every voxel of the padded ``[z, y, x]`` grid of the boolean ``wall`` (``spacing_zyx`` in mm),
    the ``[z, y, x]`` index (3, z, y, x) of the nearest (in mm) voxel that :func:`_field` defines, the
    wall and the ghost layer around it (None when that is every voxel).  It depends on the wall
    only, so it can be computed before or while the solver runs."""
    defined = wall | adjacent_to(wall)
    if defined.all():
        return None
    return ndimage.distance_transform_edt(~defined, sampling=spacing_zyx, return_distances=False, return_indices=True)


def _nearest(b: Boundaries, nearest: Future | None) -> np.ndarray | None:
    """The result of the :func:`nearest_defined` future ``nearest``, or computed now when there is none."""
    return nearest.result() if nearest is not None else nearest_defined(b.wall, b.spacing_zyx)


def _field(b: Boundaries, index: np.ndarray, values: np.ndarray, nearest: np.ndarray | None) -> np.ndarray:
    """The padded grid with ``values`` on the wall voxels ``index`` (flat) and ghost values around
    them (see :class:`LaplaceField`): each voxel next to the wall holds the mean over its wall
    neighbours of the value that puts u = 0 (pool) or 1 (epicardium) on the shared face, or mirrors
    u across a no-flux face; every other voxel the nearest defined value (in mm; ``nearest`` from
    :func:`nearest_defined`)."""
    shape = b.wall.shape
    strides = np.array([shape[1] * shape[2], shape[2], 1])
    wall, pool, epi = b.wall.ravel(), b.pool.ravel(), b.epi.ravel()
    u = np.full(wall.size, np.nan)
    u[index] = values
    targets, ghosts = [], []
    for axis, step in NEIGHBOURS:  # wall voxels never lie on the padded grid's edge
        neighbour = index + step * strides[axis]
        off_wall = ~wall[neighbour]
        target, inner = neighbour[off_wall], values[off_wall]
        targets.append(target)
        ghosts.append(np.where(pool[target], -inner, np.where(epi[target], 2.0 - inner, inner)))
    target = np.concatenate(targets)
    total = np.bincount(target, weights=np.concatenate(ghosts), minlength=u.size)
    count = np.bincount(target, minlength=u.size)
    ghost = count > 0
    u[ghost] = total[ghost] / count[ghost]
    u = u.reshape(shape)
    # beyond the ghost layer: the nearest defined value, so interpolation stencils never see NaN
    return u if nearest is None else u[tuple(nearest)]


def _safe_diagonal(system: LaplaceSystem) -> np.ndarray:
    """The matrix diagonal with 1 where it is 0: a wall voxel whose six faces are all no-flux (a stray
    voxel, e.g. in a predicted label map) has an empty row and a zero right-hand side, so it keeps
    u = 0 and reaches no epicardial vertex; 1 only keeps the preconditioner finite."""
    d = system.matrix.diagonal().copy()
    d[d == 0] = 1.0
    return d


def solve_laplace(b: Boundaries, rtol: float = 1e-8, nearest: Future | None = None) -> LaplaceField:
    """Solve with conjugate gradients preconditioned by the diagonal (the operator is SPD).  The wall
    is thin (a few voxels across), so CG needs on the order of tens of iterations.  ``nearest``: a
    future of :func:`nearest_defined` for ``b.wall`` started elsewhere, so that it runs while CG
    does (:func:`~.compute.compute_thickness` does this); without it, it is computed after the solve."""
    t0 = time.perf_counter()
    system = assemble(b)
    inv_diag = 1.0 / _safe_diagonal(system)
    precondition = linalg.LinearOperator(system.matrix.shape, matvec=lambda x: inv_diag * x)
    iterations = 0

    def count(_x):
        nonlocal iterations
        iterations += 1

    # One BLAS thread: CG's vector operations (about 10^5 entries) are too small for threads to pay
    # off, and threaded BLAS spinning against other work made the solve ten times slower.
    with threadpool_limits(limits=1, user_api="blas"):
        u, info = linalg.cg(system.matrix, system.rhs, rtol=rtol, atol=0.0, M=precondition, callback=count, maxiter=20000)
    if info != 0:
        raise RuntimeError(f"Laplace solver did not converge in {iterations} iterations")
    residual = float(np.linalg.norm(system.matrix @ u - system.rhs) / np.linalg.norm(system.rhs))
    return LaplaceField(_field(b, system.index, u, _nearest(b, nearest)), iterations, residual, time.perf_counter() - t0)


def solve_laplace_jacobi(b: Boundaries, rtol: float = 1e-8, max_iterations: int = 200000, nearest: Future | None = None) -> LaplaceField:
    """Plain Jacobi iteration, the source study's solver: the benchmark baseline, not used by default.

    Every sweep updates the whole ``[z, y, x]`` grid of ``b`` with the same finite-volume stencil as
    :func:`assemble` (array slices for the six neighbours, the wall voxels take the new value, the
    rest stays 0), from u = 0, until the relative residual ``|A u - b| / |b|`` (checked every 50
    sweeps) falls below ``rtol``.  ``nearest`` as for :func:`solve_laplace`.
    """
    t0 = time.perf_counter()
    wall = b.wall
    coupling, diag, rhs = [], np.zeros(wall.shape), np.zeros(wall.shape)
    for axis, step in NEIGHBOURS:
        h2 = b.spacing_zyx[axis] ** 2
        coupling.append(np.where(wall & shifted(wall, axis, step), 1.0 / h2, 0.0))
        dirichlet = wall & (shifted(b.pool, axis, step) | shifted(b.epi, axis, step))
        diag += np.where(dirichlet, 2.0 / h2, 0.0) + coupling[-1]
        rhs += np.where(wall & shifted(b.epi, axis, step), 2.0 / h2, 0.0)
    diag[diag == 0] = 1.0  # voxels off the wall, and stray wall voxels whose faces are all no-flux
    norm_b = np.linalg.norm(rhs)
    u = np.zeros(wall.shape)
    acc = np.empty(wall.shape)
    residual, iterations = 1.0, 0
    while iterations < max_iterations:
        acc[...] = rhs
        for (axis, step), c in zip(NEIGHBOURS, coupling):
            dst = [slice(None)] * 3
            src = [slice(None)] * 3
            dst[axis], src[axis] = (slice(None, -step), slice(step, None)) if step > 0 else (slice(-step, None), slice(None, step))
            acc[tuple(dst)] += c[tuple(dst)] * u[tuple(src)]
        if iterations % 50 == 0 and iterations:
            residual = float(np.linalg.norm((diag * u - acc)[wall]) / norm_b)
            if residual < rtol:
                break
        u = np.where(wall, acc / diag, 0.0)
        iterations += 1
    index = np.flatnonzero(wall)
    return LaplaceField(_field(b, index, u.ravel()[index], _nearest(b, nearest)), iterations, residual, time.perf_counter() - t0)
