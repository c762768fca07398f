"""Check, lazily, that a capability's Python dependencies are importable inside Slicer.

Nothing is installed at import time: a module file imports only what Slicer ships (numpy,
SimpleITK, VTK, MRML).  A Widget calls :func:`install_missing` when the user first runs a
capability; it asks once and installs what is missing into Slicer's Python with
``slicer.util.pip_install`` (PyTorch through the PyTorch extension's installer when that extension
is present, since it picks the build that matches the GPU).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

#: import name -> pip requirement.  Slicer ships numpy and SimpleITK.
SCIPY = {"scipy": "scipy>=1.10"}
IMAGE = {**SCIPY, "skimage": "scikit-image>=0.22"}
DEEP_LEARNING = {"torch": "torch>=2.2", "monai": "monai>=1.4", "safetensors": "safetensors>=0.4"}
#: Killing a background process tree on macOS needs psutil (Linux uses /proc, Windows taskkill).
BACKGROUND = {"psutil": "psutil"} if sys.platform == "darwin" else {}

#: What each module needs (the core package itself ships inside the extension).
CLEANUP = {**SCIPY, **BACKGROUND}
AGREEMENT = {**SCIPY, **DEEP_LEARNING}  # agreement metrics are MONAI's
SPARSE4D = {**SCIPY, **BACKGROUND}
THICKNESS = {**IMAGE, "threadpoolctl": "threadpoolctl>=3.1", **BACKGROUND}
#: Skull stripping's distance transforms (head-CT hemorrhage: inference, and training on hemorrhage data).
DISTANCE = {"edt": "edt>=2.3"}
HEMORRHAGE = {**SCIPY, **DISTANCE, **DEEP_LEARNING, **BACKGROUND}
TRAINING = {**SCIPY, **DISTANCE, **DEEP_LEARNING, **BACKGROUND}


def missing_packages(requirements: dict[str, str]) -> list[str]:
    """pip requirements of ``requirements`` whose module cannot be found (in the order given)."""
    return [req for module, req in requirements.items() if importlib.util.find_spec(module) is None]


def _install_torch(requirement: str) -> None:
    """PyTorch through the PyTorch extension (right CUDA build) when it is installed, else from PyPI."""
    import slicer

    try:
        import PyTorchUtils
    except ImportError:
        slicer.util.pip_install(requirement)
        return
    PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=requirement[len("torch"):])


def install_missing(requirements: dict[str, str], confirm) -> bool:
    """Offer to install what is missing: ``confirm(message) -> bool`` asks the user.  Returns True when
    everything is importable afterwards, False when the user declines or an install failed."""
    missing = missing_packages(requirements)
    if not missing:
        return True
    if not confirm(f"This SegTransfer module needs these Python packages: {', '.join(missing)}.\n"
                   "Install them into Slicer's Python now? (this may take several minutes)"):
        return False
    import slicer

    for req in missing:
        if req.startswith("torch"):
            _install_torch(req)
        else:
            slicer.util.pip_install(req)
    importlib.invalidate_caches()
    return not missing_packages(requirements)
