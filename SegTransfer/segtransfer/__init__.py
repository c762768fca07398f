"""SegTransfer core library: runs without 3D Slicer.

Image convention throughout: a ``SimpleITK.Image`` carries origin, spacing and direction in
LPS physical coordinates (millimetres); numpy arrays taken from it are indexed ``[z, y, x]``
(``[k, j, i]``).  Label maps hold 0 for background and small positive integers per structure.
"""

__version__ = "0.1.0"
