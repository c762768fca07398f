"""Phantoms with known truth, deterministic from a seed: analytic shells, a beating LV over 20 phases,
head CTs with hemorrhages, and "site" appearance profiles."""

from .cardiac import LVPhantom, LVTruth, beating_lv, contraction, truncated_ellipsoid_volume
from .head import KINDS as HEMORRHAGE_KINDS
from .head import HeadPhantom, HeadTruth, Hemorrhage, head_ct
from .shells import EllipsoidTruth, ShellTruth, cylindrical_shell, ellipsoidal_shell, spherical_shell
from .sites import SITES, SiteProfile, get_site, list_sites, scanner_blur_and_noise

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
