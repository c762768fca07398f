"""What a batch does to one study: the head-CT and the cardiac pipelines.

Each pipeline writes into a study's (temporary) output folder and returns the study's record: the
measurements (``metrics``), the files written (``files``, relative to the study folder) and the
review figures (``figures``).  Bad input raises the capability's own errors; the runner records
them as the study's failure.

Head CT (capability ``hemorrhage``): the shipped or given model package (verified, loaded once per
batch), outputs of ``segtransfer hemorrhage segment`` in ``hemorrhage/``, a DICOM SEG of the mask in
``dicom/`` when asked and the CT came from a DICOM series, overlay montages (axial, coronal).

Cardiac (``segment`` with a cardiac model package, ``cleanup``, ``sparse4d``, ``thickness``): the study's files by the batch convention of
:func:`segtransfer.sparse4d.study_inputs` (series folder, 4D file or multi-phase DICOM, with
``labels4d.*`` or ``labels/labels_NN.*`` and an optional predicted volume curve); ED and ES from the
labelled phases' blood-pool volumes (or the prediction); ``segment`` runs the cardiac 4D model on
every phase (``segment/``, :mod:`segtransfer.cardiac.infer`), which gives the predicted volume curve
and, for a study without labels at ED/ES, the labels that thickness measures; ``cleanup`` closes holes and gaps in the ED and ES labels (radius 5 voxels, the consensus
rule) into ``cleanup/``; ``sparse4d`` writes the 1 mm sparse ED/ES pair into ``sparse4d/``;
``thickness`` measures the (cleaned) ED and ES labels into ``thickness/`` (surfaces and statistics).
Figures: the ED overlay, the LV volume curve with ED/ES and EF, each phase's thickness surface and
AHA bullseye.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InputError
from ..io import LabelImage, write_labels, write_text
from ..labels import CARDIAC_SEGMENTS, HEMORRHAGE_SEGMENTS
from ..progress import ProgressCallback
from .studies import Study

#: Grey-level windows (HU) of the overlay montages.
HEAD_WINDOW = (0.0, 80.0)
CARDIAC_WINDOW = (-160.0, 440.0)
CLEANUP_RADIUS_VOXELS = 5.0


@dataclass
class BatchOptions:
    """Settings shared by every study of a batch."""

    hemorrhage_model: Path | None = None   # None: the shipped demonstration model
    hemorrhage_sha256: str | None = None
    dicom_seg: bool = False
    thickness_method: str = "streamline"
    sparse_spacing_mm: float = 1.0
    cardiac_model: Path | None = None       # a cardiac 4D model package: enables the "segment" capability
    cardiac_sha256: str | None = None
    device: str = "auto"
    _model: tuple | None = field(default=None, repr=False)
    _cardiac: tuple | None = field(default=None, repr=False)

    def cardiac_network(self):
        """``(network, package, device)`` of the cardiac model, loaded (and verified) once."""
        if self._cardiac is None:
            from ..cardiac.network import choose_device
            from ..cardiac.train import load_cardiac_network

            if self.cardiac_model is None:
                raise InputError("--cardiac-model", "the segment capability needs a cardiac model package")
            device = choose_device(self.device)
            network, package = load_cardiac_network(self.cardiac_model, self.cardiac_sha256, device)
            self._cardiac = (network, package, device)
        return self._cardiac

    def network(self):
        """``(network, package)`` of the hemorrhage model, loaded (and verified) once."""
        if self._model is None:
            from ..hemorrhage import default_model_path
            from ..models import load_network

            self._model = load_network(self.hemorrhage_model or default_model_path(), expected_sha256=self.hemorrhage_sha256)
        return self._model


def _scaled(progress: ProgressCallback, lo: float, hi: float, label: str) -> ProgressCallback:
    return lambda f, msg="": progress(lo + (hi - lo) * min(max(f, 0.0), 1.0), f"{label}: {msg}" if msg else label)


def run_head(study: Study, folder: Path, capabilities: tuple[str, ...], options: BatchOptions,
             progress: ProgressCallback) -> dict:
    """Hemorrhage segmentation of one head CT into ``folder``; returns the study record."""
    from ..hemorrhage import segment
    from ..hemorrhage.report import write_outputs
    from ..io import read_image
    from ..review.figures import overlay_montage

    if study.path.name.lower().endswith(".inv3"):
        from ..io.invesalius import read_inv3

        image = read_inv3(study.path)
    else:
        image = read_image(study.path)
    record: dict = {"metrics": {}, "files": {}, "figures": {}}
    if "hemorrhage" not in capabilities:
        return record
    network, package = options.network()
    result = segment(image, network, package.description, where=str(study.path), progress=_scaled(progress, 0.0, 0.8, "hemorrhage"))
    write_outputs(folder / "hemorrhage", study.study_id, image, result,
                  {"sha256": package.sha256, "name": package.description.get("name")})
    summary = result.summary()
    record["metrics"] = {"hemorrhage_detected": bool(result.detected), "hemorrhage_ml": round(float(result.volume_ml), 3),
                         "lesions": len(result.lesions), "brain_ml": round(float(summary["brain_ml"]), 1),
                         "min_detection_ml": summary["min_detection_ml"]}
    record["files"].update(segmentation="hemorrhage/hemorrhage.seg.nrrd", summary="hemorrhage/summary.json")
    if options.dicom_seg:
        if study.path.is_dir():
            from ..io.dicom_seg import write_dicom_seg

            write_dicom_seg(LabelImage(result.mask, list(HEMORRHAGE_SEGMENTS)), study.path, folder / "dicom" / "hemorrhage_seg.dcm",
                            series_description="SegTransfer hemorrhage")
            record["files"]["dicom_seg"] = "dicom/hemorrhage_seg.dcm"
        else:
            record["notes"] = ["no DICOM SEG: the CT was not read from a DICOM series"]
    progress(0.85, "figures")
    figs = overlay_montage(image, result.mask, HEMORRHAGE_SEGMENTS, folder / "figures", "hemorrhage", window=HEAD_WINDOW, pick="most")
    record["figures"] = {f"overlay_{k}": f"figures/{v.name}" for k, v in figs.items()}
    return record


def run_cardiac(study: Study, folder: Path, capabilities: tuple[str, ...], options: BatchOptions,
                progress: ProgressCallback) -> dict:
    """Model segmentation (``segment``), cleanup, sparse ED/ES pair and wall thickness of one cardiac series into ``folder``."""
    from ..cleanup import close_labels
    from ..io import Series4D
    from ..review.figures import overlay_montage, volume_curve_plot
    from ..sparse4d import build_sparse4d, load_predicted_volumes, load_study, study_inputs, summarise_phases, write_sparse4d

    inputs = study_inputs(study.path)
    series, sources = load_study(inputs["series"], labels4d=inputs["labels4d"], phase_labels=inputs["phase_labels"])
    n = len(series)
    predicted, _ = load_predicted_volumes(n, inputs["predicted_volumes_file"], inputs["predicted_labels_file"])
    record: dict = {"metrics": {}, "files": {}, "figures": {}, "notes": []}
    model_labels = None
    if "segment" in capabilities:
        from ..cardiac.infer import segment_series, write_result

        network, package, device = options.cardiac_network()
        result = segment_series(series, network, package.description, device=device, where=str(study.path),
                                progress=_scaled(progress, 0.0, 0.3, "cardiac model"))
        write_result(folder / "segment", result, package.description, series,
                     {"sha256": package.sha256, "name": package.name}, str(study.path))
        predicted, model_labels = list(result.pool_ml), result.labels
        record["metrics"].update(model_ed_phase=result.ed_index, model_es_phase=result.es_index,
                                 model_ejection_fraction=_r(result.ejection_fraction, 4))
        record["files"]["model_segmentation"] = "segment/labels4d.nii.gz"
    if not series.labels and model_labels is None:
        raise InputError(study.path, "no labelled phase: the cardiac pipeline needs labels at ED and ES (or a cardiac model)")
    method = "labels" if len(series.labels) >= 2 else "auto"  # expert labels decide ED/ES when there are enough
    summary = summarise_phases(series.labels, n, percent_rr=series.percent_rr, predicted_volumes=predicted, method=method,
                               where=str(study.path))
    ed, es = summary.choice.ed_index, summary.choice.es_index
    missing = [f"{name} (phase {i})" for name, i in (("ED", ed), ("ES", es)) if i not in series.labels]
    if missing and model_labels is None:
        raise InputError(study.path, f"{' and '.join(missing)} not labelled")
    source = "labels" if not missing else "model"
    if source == "model":  # no expert labels at ED/ES: measure on the model's segmentation; training pairs need expert labels
        skipped = [c for c in ("cleanup", "sparse4d") if c in capabilities]
        capabilities = tuple(c for c in capabilities if c not in skipped)
        if skipped:
            record["notes"].append(f"{' and '.join(skipped)} not run: ED/ES are not labelled (they need expert labels)")
        record["notes"].append("ED/ES, EF and thickness from the model's segmentation")
    record["metrics"].update({"phases": n, "labelled_phases": sorted(series.labels), "ed_phase": ed, "es_phase": es,
                                "ed_es_method": summary.choice.method,
                                "edv_ml": _r(summary.edv_ml), "esv_ml": _r(summary.esv_ml), "ejection_fraction": _r(summary.ejection_fraction, 4),
                                "volume_curve_ml": [_r(v) for v in summary.pool_ml],
                                "predicted_curve_ml": [_r(v) for v in predicted] if predicted is not None else None,
                                "measured_on": source})
    roles = {ed: "ED", es: "ES"}
    labels = {i: (series.labels[i] if source == "labels" else model_labels[i]) for i in (ed, es)}
    if "cleanup" in capabilities:
        changed = {}
        for i, role in roles.items():
            progress(0.05 + 0.1 * (role == "ES"), f"cleanup {role}")
            res = close_labels(LabelImage(labels[i], list(CARDIAC_SEGMENTS)), radius=CLEANUP_RADIUS_VOXELS, where=f"{study.path} phase {i}")
            labels[i] = res.labels.image
            changed[role] = int(res.report.voxels_changed)
            write_labels(res.labels, folder / "cleanup" / f"{role.lower()}_cleaned.seg.nrrd")
            write_text(folder / "cleanup" / f"{role.lower()}_report.json", res.report.to_json())
        record["metrics"]["cleanup_voxels_changed"] = changed
        record["files"]["cleanup"] = "cleanup/"
    if "sparse4d" in capabilities:
        progress(0.2, "sparse 4D pair")
        pair = build_sparse4d(Series4D(series.phases, series.percent_rr, dict(labels)), spacing_mm=options.sparse_spacing_mm,
                              crop_margin_mm=10.0, ed_index=ed, es_index=es, study_id=study.study_id, sources=sources,
                              where=str(study.path), progress=_scaled(progress, 0.2, 0.45, "sparse 4D"))
        write_sparse4d(pair, folder / "sparse4d")
        record["metrics"]["sparse4d_labelled_phases"] = pair.labelled_phases()
        record["files"]["sparse4d"] = "sparse4d/"
    if "thickness" in capabilities:
        from ..thickness import compute_thickness, write_study

        results = []
        for k, (i, role) in enumerate(roles.items()):
            progress(0.45 + 0.2 * k, f"thickness {role}")
            results.append((i, role, compute_thickness(labels[i], options.thickness_method, where=f"{study.path} phase {i}")))
        rows = write_study(folder / "thickness", study.study_id, results)
        for r in rows:
            record["metrics"].update({f"thickness_{r['role'].lower()}_{k}": _r(r[k], 3) for k in ("median_mm", "p95_mm", "max_mm")})
        record["files"]["thickness"] = "thickness/statistics.csv"
        progress(0.85, "thickness figures")
        record["figures"].update(_thickness_figures(results, folder))
    progress(0.9, "figures")
    figs = overlay_montage(series.phases[ed], labels[ed], CARDIAC_SEGMENTS, folder / "figures", "ed", window=CARDIAC_WINDOW)
    record["figures"].update({f"overlay_{k}": f"figures/{v.name}" for k, v in figs.items()})
    curve = volume_curve_plot(summary.pool_ml, folder / "figures" / "volume_curve.png", ed, es, summary.ejection_fraction,
                              series.percent_rr, predicted_ml=predicted, title=f"{study.study_id}: LV blood pool")
    record["figures"]["volume_curve"] = f"figures/{curve.name}"
    return record


def _thickness_figures(results: list, folder: Path) -> dict:
    """Surface views and bullseye per phase, on one colour range for ED and ES."""
    from ..review.figures import aha_segments, bullseye_plot, segment_means, surface_views, value_range

    rng = value_range(np.concatenate([r.thickness_mm for _, _, r in results]))
    figs = {}
    for _, role, r in results:
        surface_views(r.points_lps, r.triangles, r.thickness_mm, folder / "figures" / f"thickness_{role}_surface.png",
                      title=f"{role} epicardial wall thickness", vrange=rng)
        seg, _ = aha_segments(r.points_lps)
        means = segment_means(seg, r.thickness_mm)
        bullseye_plot(means, folder / "figures" / f"thickness_{role}_bullseye.png", title=f"{role} thickness per AHA segment (mm)",
                      vrange=rng)
        write_text(folder / "thickness" / f"aha_{role}.json", json.dumps({str(k): _r(v, 3) for k, v in means.items()}, indent=2))
        figs[f"thickness_{role}_surface"] = f"figures/thickness_{role}_surface.png"
        figs[f"thickness_{role}_bullseye"] = f"figures/thickness_{role}_bullseye.png"
    return figs


def _r(value, digits: int = 2):
    if value is None:
        return None
    v = float(value)
    return None if not np.isfinite(v) else round(v, digits)


PIPELINES: dict[str, Callable[..., dict]] = {"head": run_head, "cardiac": run_cardiac}
