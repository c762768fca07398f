"""Package attributes imported on first use (PEP 562), so that importing a light part of a package
(a constant, the preprocessing) does not import torch and MONAI through its ``__init__``.

Standard-library ``importlib`` only; ``lazy_loader`` (scientific-Python's package for this) would be
one more dependency for three packages.
"""

from __future__ import annotations

import importlib


def lazy_exports(package: str, exports: dict[str, str]):
    """``(__getattr__, __dir__)`` for the package named ``package``: attribute ``name`` is imported
    from the submodule ``exports[name]`` (relative to the package, e.g. ``".infer"``, or
    ``".head:KINDS"`` for another name there) when first looked up, then kept in the package's
    namespace."""

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = exports[name].partition(":")
        value = getattr(importlib.import_module(module, package), attribute or name)
        globals_of_package = importlib.import_module(package).__dict__
        globals_of_package[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(exports) | set(importlib.import_module(package).__dict__))

    return __getattr__, __dir__
