"""Phantoms with known truth, deterministic from a seed: analytic shells, a beating LV over 20 phases,
head CTs with hemorrhages, and "site" appearance profiles."""

from ..lazy import lazy_exports

_EXPORTS = {
    **{name: ".cardiac" for name in ("LVPhantom", "LVTruth", "beating_lv", "contraction", "truncated_ellipsoid_volume")},
    **{name: ".head" for name in ("HeadPhantom", "HeadTruth", "Hemorrhage", "head_ct")},
    "HEMORRHAGE_KINDS": ".head:KINDS",
    **{name: ".shells" for name in ("EllipsoidTruth", "ShellTruth", "cylindrical_shell", "ellipsoidal_shell", "spherical_shell")},
    **{name: ".sites" for name in ("SITES", "SiteProfile", "get_site", "list_sites", "scanner_blur_and_noise")},
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)  # the generators and their imports load on first use


__all__ = [
    "EllipsoidTruth",
    "HEMORRHAGE_KINDS",
    "HeadPhantom",
    "HeadTruth",
    "Hemorrhage",
    "LVPhantom",
    "LVTruth",
    "SITES",
    "ShellTruth",
    "SiteProfile",
    "beating_lv",
    "contraction",
    "cylindrical_shell",
    "ellipsoidal_shell",
    "get_site",
    "head_ct",
    "list_sites",
    "scanner_blur_and_noise",
    "spherical_shell",
    "truncated_ellipsoid_volume",
]
