"""Phantoms with known truth, deterministic from a seed: analytic shells, a beating LV over 20 phases,
head CTs with hemorrhages, and "site" appearance profiles."""

from .shells import ShellTruth, cylindrical_shell, spherical_shell

__all__ = ["ShellTruth", "cylindrical_shell", "spherical_shell"]
