"""Shared plumbing of the SegTransfer Slicer modules.

* :mod:`.nodes`: MRML nodes <-> core objects (SimpleITK images, LabelImage, Series4D, VTK surfaces,
  tables, plots), with Slicer's RAS and the files' LPS converted explicitly (MRML only, no Qt);
* :mod:`.process`: running the ``segtransfer`` CLI in a background process, with progress, log,
  completion and cancel (Qt-free);
* :mod:`.dependencies`: checking a capability's Python dependencies lazily inside Slicer;
* :mod:`.module`: the module, Widget, Logic and self-test base classes the module files share;
* :mod:`.widgets`: the Qt progress/cancel monitor the Widgets use (application only).
"""
