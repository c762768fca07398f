"""Partner-site model packages: save, load, verify, inspect; MONAI bundle import and export.

The format and its security rules are described in ``docs/model_package.md``.  In short: a folder
or zip with ``model.json`` (description), ``weights.safetensors``, ``model_card.json`` +
``MODEL_CARD.md`` and ``checksums.json``; only allow-listed MONAI networks are built, only
safetensors weights are read, nothing is ever unpickled, and no image data fits in a package.

Typical use::

    from segtransfer.models import load_network
    network, package = load_network("partner_lv_model.zip", expected_sha256="...")
"""

from .architectures import ALLOWED_ARCHITECTURES, WeightTransfer, build_network, load_weights_strict, transfer_weights
from .bundle import export_bundle, import_bundle
from .metadata import (
    FORMAT_NAME,
    FORMAT_VERSION,
    intensity_transform,
    make_description,
    render_model_card,
    segments,
    validate_card,
    validate_description,
)
from .package import (
    PACKAGE_FILES,
    ModelPackage,
    VerifyReport,
    load_network,
    load_package,
    package_info,
    save_package,
    verify_package,
)

__all__ = [
    "ALLOWED_ARCHITECTURES",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "PACKAGE_FILES",
    "ModelPackage",
    "VerifyReport",
    "WeightTransfer",
    "build_network",
    "export_bundle",
    "import_bundle",
    "intensity_transform",
    "load_network",
    "load_package",
    "load_weights_strict",
    "make_description",
    "package_info",
    "render_model_card",
    "save_package",
    "segments",
    "transfer_weights",
    "validate_card",
    "validate_description",
    "verify_package",
]
