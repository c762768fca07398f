"""Check, lazily, that the core's Python dependencies are importable inside Slicer.

Nothing is installed at import time; a Widget calls :func:`missing_packages` when the user first
runs a capability and offers ``slicer.util.pip_install`` for what is missing.
"""

from __future__ import annotations

import importlib.util

#: import name -> pip requirement, per capability.
CORE = {"SimpleITK": "SimpleITK", "numpy": "numpy", "scipy": "scipy", "skimage": "scikit-image", "slicerio": "slicerio"}
DEEP_LEARNING = {"torch": "torch", "monai": "monai", "safetensors": "safetensors"}


def missing_packages(requirements: dict[str, str]) -> list[str]:
    """pip requirements of ``requirements`` whose module cannot be found."""
    return [req for module, req in requirements.items() if importlib.util.find_spec(module) is None]


def install_missing(requirements: dict[str, str], confirm) -> bool:
    """Offer to install what is missing: ``confirm(message) -> bool`` asks the user.  Returns True when
    everything is importable afterwards.  Uses ``slicer.util.pip_install`` (Slicer's own Python)."""
    missing = missing_packages(requirements)
    if not missing:
        return True
    if not confirm(f"SegTransfer needs these Python packages: {', '.join(missing)}. Install them now?"):
        return False
    import slicer

    for req in missing:
        slicer.util.pip_install(req)
    return not missing_packages(requirements)
