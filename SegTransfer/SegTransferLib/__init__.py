"""Shared plumbing of the SegTransfer Slicer modules (needs Slicer's MRML libraries, not Qt).

* :mod:`.nodes`: MRML nodes <-> core objects (SimpleITK images, LabelImage, Series4D, VTK surfaces,
  tables), with Slicer's RAS and the files' LPS converted explicitly;
* :mod:`.process`: running the ``segtransfer`` CLI in a background process, with progress and cancel;
* :mod:`.dependencies`: checking the core's Python dependencies lazily inside Slicer.
"""
