"""``segtransfer phantom``: write phantoms with known truth for tests, demos and validation.

Subcommands:

* ``lv``: a beating-LV cardiac CT series (20 phases by default) with labels for every phase, as a
  series folder (``series.json``, ``phase_NN.nii.gz``, ``labels_NN.nii.gz``; read it with
  ``segtransfer.io.read_series4d``) or as 4D NIfTI files (``image4d.nii.gz``, ``labels4d.nii.gz``);
  with ``--defects`` the labels carry annotation defects and the clean truth is written beside them.
* ``head``: a head CT with hemorrhages: ``image.nii.gz``, ``mask.nii.gz`` and ``mask.seg.nrrd``
  (hemorrhage 0/1), ``lesions.nii.gz`` (one value per lesion), ``brain_mask.nii.gz``.
* ``shell``: a spherical or cylindrical shell with exact wall thickness as a 0/1/2 label map.
* ``sites``: list the site appearance profiles.

Every output folder also holds ``truth.json`` (what the generator was asked for and the known
truth).  Outputs are written to a temporary folder and renamed into place, so a failure leaves
nothing behind; an existing non-empty folder is only replaced with ``--force`` and only when it holds
an earlier phantom's ``truth.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import InputError

TRUTH_FILE = "truth.json"


def _spacing_arg(values: list[float] | None) -> tuple[float, float, float] | None:
    """``--spacing`` as (x, y, z) mm: one value means isotropic."""
    if values is None:
        return None
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise InputError("--spacing", f"give one or three values in mm, got {len(values)}")
    if not all(v > 0 for v in values):
        raise InputError("--spacing", f"spacings must be positive, got {values}")
    return tuple(float(v) for v in values)


def _check_out(out: Path, force: bool) -> None:
    """Refuse to replace anything but an earlier phantom output, and that only with ``--force``."""
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise InputError(out, "folder exists and is not empty (use --force to replace an earlier phantom)")
        try:
            earlier = json.loads((out / TRUTH_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            earlier = None
        if not isinstance(earlier, dict) or not str(earlier.get("generator", "")).startswith("segtransfer.phantoms"):
            raise InputError(out, f"folder holds no phantom {TRUTH_FILE}; refusing to replace it")


def _write_truth(folder: Path, record: dict) -> None:
    from ..io import write_text

    write_text(folder / TRUTH_FILE, json.dumps(record, indent=2) + "\n")


def _run_lv(args: argparse.Namespace) -> int:
    from ..io import atomic_dir, write_image, write_series4d
    from ..io.series4d import join_4d
    from ..phantoms import beating_lv, get_site
    from ..progress import print_progress

    out = Path(args.out)
    _check_out(out, args.force)
    spacing = _spacing_arg(args.spacing) or (1.25, 1.25, 2.0)
    profile = get_site(args.site)
    ph = beating_lv(seed=args.seed, n_phases=args.phases, spacing=spacing, site=profile, defects=args.defects, progress=print_progress)
    n = len(ph.series)
    record = {
        "generator": "segtransfer.phantoms.beating_lv",
        "seed": args.seed,
        "n_phases": n,
        "spacing_mm": list(spacing),
        "site": profile.to_dict(),
        "defects": bool(args.defects),
        "form": args.form,
        "labels": {"0": "background", "1": "LV blood pool (papillary muscles included)", "2": "LV myocardium"},
        "truth": ph.truth.to_dict(),
        "annotation_defects": {str(i): d for i, d in sorted(ph.defects.items())},
    }
    with atomic_dir(out) as tmp:
        if args.form == "folder":
            # The series itself is the output folder: read_series4d(out) loads it.
            write_series4d(ph.series, tmp, form="folder")
            files = {"series": "series.json"}
            if args.defects:
                for i in range(n):
                    write_image(ph.clean_labels[i], tmp / "clean" / f"labels_{i:02d}.nii.gz")
                files["clean_labels"] = "clean/labels_NN.nii.gz"
        else:
            write_series4d(ph.series, tmp / "image4d.nii.gz", form="nifti")
            write_image(join_4d([ph.series.labels[i] for i in range(n)]), tmp / "labels4d.nii.gz")
            files = {"image4d": "image4d.nii.gz", "labels4d": "labels4d.nii.gz"}
            if args.defects:
                write_image(join_4d([ph.clean_labels[i] for i in range(n)]), tmp / "clean_labels4d.nii.gz")
                files["clean_labels4d"] = "clean_labels4d.nii.gz"
        record["files"] = files
        _write_truth(tmp, record)
    t = ph.truth
    print(f"Wrote {n}-phase LV phantom ({args.form}) to {out}")
    print(f"  ED phase {t.ed_index} ({t.cavity_ml[t.ed_index]:.1f} mL), ES phase {t.es_index} ({t.cavity_ml[t.es_index]:.1f} mL), "
          f"EF {100 * t.ejection_fraction:.1f} %, myocardium {t.myocardium_ml[0]:.1f} mL")
    print(f"  truth: {out / TRUTH_FILE}")
    return 0


def _parse_hemorrhage(text: str):
    from ..phantoms import HEMORRHAGE_KINDS

    key = text.strip().lower()
    if key == "all":
        return True
    if key == "none":
        return False
    if key == "random":
        return "random"
    kinds = [k.strip() for k in key.split(",") if k.strip()]
    bad = [k for k in kinds if k not in HEMORRHAGE_KINDS]
    if not kinds or bad:
        raise InputError("--hemorrhage", f"unknown kind(s) {', '.join(bad) or text!r}; use all, none, random or a comma list of {', '.join(HEMORRHAGE_KINDS)}")
    return kinds


def _run_head(args: argparse.Namespace) -> int:
    from ..io import LabelImage, atomic_dir, write_image, write_labels
    from ..labels import HEMORRHAGE_SEGMENTS, Segment
    from ..phantoms import get_site, head_ct

    out = Path(args.out)
    _check_out(out, args.force)
    hemorrhage = _parse_hemorrhage(args.hemorrhage)
    profile = get_site(args.site)
    ph = head_ct(seed=args.seed, spacing=_spacing_arg(args.spacing), site=profile, hemorrhage=hemorrhage)
    lesion_segments = [Segment(h.label, f"{h.kind} {h.label}", HEMORRHAGE_SEGMENTS[0].color) for h in ph.truth.lesions]
    record = {
        "generator": "segtransfer.phantoms.head_ct",
        "seed": args.seed,
        "spacing_mm": list(ph.image.GetSpacing()),
        "site": profile.to_dict(),
        "hemorrhage": args.hemorrhage,
        "labels": {"mask": {"0": "background", "1": "hemorrhage"}, "lesions": {str(h.label): h.kind for h in ph.truth.lesions}},
        "files": {
            "image": "image.nii.gz",
            "mask": "mask.nii.gz",
            "mask_seg": "mask.seg.nrrd",
            "lesions": "lesions.nii.gz",
            "brain_mask": "brain_mask.nii.gz",
        },
        "truth": ph.truth.to_dict(),
    }
    with atomic_dir(out) as tmp:
        write_image(ph.image, tmp / "image.nii.gz")
        write_labels(LabelImage(ph.mask, list(HEMORRHAGE_SEGMENTS)), tmp / "mask.nii.gz")
        write_labels(LabelImage(ph.mask, list(HEMORRHAGE_SEGMENTS)), tmp / "mask.seg.nrrd")
        write_labels(LabelImage(ph.lesions, lesion_segments), tmp / "lesions.nii.gz")
        write_labels(ph.brain_mask, tmp / "brain_mask.nii.gz")
        _write_truth(tmp, record)
    t = ph.truth
    size = "x".join(str(s) for s in ph.image.GetSize())
    print(f"Wrote head CT phantom ({size} voxels, {'x'.join(f'{s:g}' for s in ph.image.GetSpacing())} mm, {profile.name}) to {out}")
    if t.lesions:
        for h in t.lesions:
            print(f"  {h.label}: {h.kind}, {h.volume_ml:.2f} mL")
        print(f"  total hemorrhage {t.total_volume_ml:.2f} mL")
    else:
        print("  no hemorrhage (negative scan)")
    print(f"  truth: {out / TRUTH_FILE}")
    return 0


def _run_shell(args: argparse.Namespace) -> int:
    import math

    from ..io import atomic_dir, write_labels
    from ..phantoms import cylindrical_shell, spherical_shell

    out = Path(args.out)
    _check_out(out, args.force)
    spacing = _spacing_arg(args.spacing) or (1.0, 1.0, 1.0)
    if not 0 < args.r_inner < args.r_outer:
        raise InputError("--r-inner/--r-outer", f"need 0 < r-inner < r-outer, got {args.r_inner} and {args.r_outer} mm")
    if args.direction is not None:
        import numpy as np

        d = np.asarray(args.direction, dtype=float).reshape(3, 3)
        if not np.allclose(d.T @ d, np.eye(3), atol=1e-4):
            raise InputError("--direction", "the nine direction cosines must form an orthonormal matrix (row-major)")
    if args.kind == "sphere":
        labels, truth = spherical_shell(args.r_inner, args.r_outer, spacing=spacing, direction=args.direction)
        inner_ml = 4.0 / 3.0 * math.pi * args.r_inner**3 / 1000.0
        outer_ml = 4.0 / 3.0 * math.pi * args.r_outer**3 / 1000.0
    else:
        if not args.length > 0:
            raise InputError("--length", f"must be positive, got {args.length}")
        labels, truth = cylindrical_shell(args.r_inner, args.r_outer, args.length, spacing=spacing, direction=args.direction)
        inner_ml = math.pi * args.r_inner**2 * args.length / 1000.0
        outer_ml = math.pi * args.r_outer**2 * args.length / 1000.0
    name = f"labels.{args.label_format}"
    record = {
        "generator": f"segtransfer.phantoms.{args.kind}_shell",
        "spacing_mm": list(spacing),
        "direction": list(labels.image.GetDirection()),
        "labels": {"0": "background", "1": "inside the inner surface", "2": "wall"},
        "files": {"labels": name},
        "truth": {
            "kind": truth.kind,
            "center_mm": list(truth.center),
            "r_inner_mm": truth.r_inner,
            "r_outer_mm": truth.r_outer,
            "thickness_mm": truth.thickness,
            "axis": list(truth.axis) if truth.axis is not None else None,
            "length_mm": truth.length,
            "inner_volume_ml": inner_ml,
            "wall_volume_ml": outer_ml - inner_ml,
        },
    }
    with atomic_dir(out) as tmp:
        write_labels(labels, tmp / name)
        _write_truth(tmp, record)
    print(f"Wrote {args.kind} shell (thickness {truth.thickness:g} mm) to {out / name}")
    print(f"  truth: {out / TRUTH_FILE}")
    return 0


def _run_sites(args: argparse.Namespace) -> int:
    from ..phantoms import SITES, list_sites

    if args.json:
        print(json.dumps({name: SITES[name].to_dict() for name in list_sites()}, indent=2))
        return 0
    for name in list_sites():
        p = SITES[name]
        print(f"{name}: {p.description}")
        print(f"  cardiac: blood {p.blood_hu:g} HU, myocardium {p.myocardium_hu:g} HU, noise {p.cardiac_noise_hu:g} HU, "
              f"FWHM {p.cardiac_fwhm_mm[0]:g} mm in-plane / {p.cardiac_fwhm_mm[1]:g} mm through-plane")
        print(f"  head: grey {p.grey_hu:g} / white {p.white_hu:g} HU, noise {p.head_noise_hu:g} HU, "
              f"spacing {' x '.join(f'{s:g}' for s in p.head_spacing)} mm, FWHM {p.head_fwhm_mm[0]:g} / {p.head_fwhm_mm[1]:g} mm, "
              f"lesion scale {p.lesion_scale:g}")
    return 0


def register(subparsers) -> None:
    """Add ``phantom`` and its subcommands to the CLI."""
    from ..phantoms.sites import DEFAULT_SITE, list_sites

    parser = subparsers.add_parser(
        "phantom",
        help="write phantoms with known truth (beating LV, head CT with hemorrhages, shells)",
        description="Write phantoms with known truth: a beating LV series, a head CT with hemorrhages, an analytic "
        "shell; list the site appearance profiles.  Each output folder holds truth.json.",
    )
    sub = parser.add_subparsers(dest="phantom", metavar="KIND")
    sub.required = True

    def common(p: argparse.ArgumentParser, spacing_help: str, seed: bool = True, site: bool = True) -> None:
        p.add_argument("--out", required=True, help="output folder (created; replaced only with --force)")
        p.add_argument("--force", action="store_true", help="replace an existing phantom output folder")
        p.add_argument("--spacing", type=float, nargs="+", metavar="MM", help=spacing_help)
        if seed:
            p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same phantom (default 0)")
        if site:
            p.add_argument("--site", choices=list_sites(), default=DEFAULT_SITE, help=f"site appearance profile (default {DEFAULT_SITE})")

    lv = sub.add_parser(
        "lv",
        help="beating-LV cardiac CT series with labels for every phase",
        description="Write a beating-LV cardiac CT series (HU) with 0/1/2 labels (background, LV blood pool, LV "
        "myocardium) for every phase and truth.json (cavity and myocardial volumes, wall thickness, ED/ES, EF).",
    )
    common(lv, "voxel spacing x y z in mm, or one value for isotropic (default 1.25 1.25 2)")
    lv.add_argument("--phases", type=int, default=20, help="number of phases over the R-R interval (default 20)")
    lv.add_argument("--defects", action="store_true", help="put annotation defects (holes in the pool, pool/wall gaps) into the labels; the clean truth is written too")
    lv.add_argument("--form", choices=("folder", "nifti"), default="folder",
                    help="folder: series.json with one file per phase; nifti: image4d.nii.gz and labels4d.nii.gz (default folder)")
    lv.set_defaults(func=_run_lv)

    head = sub.add_parser(
        "head",
        help="head CT with hemorrhages and a hemorrhage mask",
        description="Write a head CT (HU) with intracranial hemorrhages, the hemorrhage mask (.nii.gz and Slicer "
        ".seg.nrrd), a per-lesion label map, the brain mask and truth.json (kind, volume and centroid per lesion).",
    )
    common(head, "voxel spacing x y z in mm, or one value for isotropic (default: the site's, e.g. 0.9 0.9 5)")
    head.add_argument("--hemorrhage", default="all",
                      help="all (one of each kind, default), none (negative scan), random, or a comma list of: "
                      "intraparenchymal, subdural, epidural, subarachnoid, intraventricular")
    head.set_defaults(func=_run_head)

    shell = sub.add_parser(
        "shell",
        help="spherical or cylindrical shell with exact wall thickness",
        description="Write a concentric spherical or cylindrical shell as a 0/1/2 label map (1 inside, 2 wall) and "
        "truth.json with the exact thickness and volumes.",
    )
    common(shell, "voxel spacing x y z in mm, or one value for isotropic (default 1)", seed=False, site=False)
    shell.add_argument("--kind", choices=("sphere", "cylinder"), default="sphere", help="shell shape (default sphere)")
    shell.add_argument("--r-inner", type=float, default=20.0, help="inner radius in mm (default 20)")
    shell.add_argument("--r-outer", type=float, default=30.0, help="outer radius in mm (default 30)")
    shell.add_argument("--length", type=float, default=40.0, help="cylinder length in mm (default 40)")
    shell.add_argument("--direction", type=float, nargs=9, metavar="D", help="nine direction cosines (row-major, LPS) for an oblique grid")
    shell.add_argument("--label-format", choices=("nii.gz", "nrrd", "seg.nrrd"), default="nii.gz", help="label file format (default nii.gz)")
    shell.set_defaults(func=_run_shell)

    sites = sub.add_parser("sites", help="list the site appearance profiles", description="List the site appearance profiles (noise, contrast, resolution, lesion size).")
    sites.add_argument("--json", action="store_true", help="print the profiles as JSON")
    sites.set_defaults(func=_run_sites)
