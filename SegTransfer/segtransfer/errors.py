"""Errors raised on bad input.  Each one names the file (or object) and the problem in one line."""

from __future__ import annotations

import os


class SegTransferError(Exception):
    """Base class: a problem the user can fix; the CLI prints it as one line and exits non-zero."""


class InputError(SegTransferError):
    """A bad input file or value.  ``str(err)`` is ``"<where>: <problem>"``."""

    def __init__(self, where: str | os.PathLike, problem: str):
        self.where = str(where)
        self.problem = problem
        super().__init__(f"{self.where}: {problem}")


class GeometryError(InputError):
    """Two images that must share a voxel grid do not."""
