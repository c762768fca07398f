"""The review report of a batch: one self-contained HTML page, ``OUT/report.html``, whose images lie
beside it (``OUT/studies/<id>/figures/*.png``, linked by relative paths).

The page has a summary table (one row per study, linking to its section), one section per study
(overlay montages in two planes, hemorrhage volume and detection, LV volume curve with ED/ES and EF,
thickness surfaces and bullseye plots, the measurements and output files) and the failed studies
with their reasons.  It uses no external resource (no CDN, fonts or scripts from elsewhere), so it
opens offline.  A small inline script marks any image that fails to load with a visible warning and
records the counts on ``<body>`` (``data-images-loaded``, ``data-images-broken``).
"""

from __future__ import annotations

import html
import json
import os
import time
from pathlib import Path

from ..errors import InputError
from ..io import write_text

REPORT_FILE = "report.html"

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;margin:1.5em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;font-size:.9em}
th{background:#f2f2f2}.ok{color:#1e7e34}.failed{color:#b00020;font-weight:bold}.skipped{color:#555}
.figs{display:flex;flex-wrap:wrap;gap:1em}.figs figure{margin:0;max-width:100%}.figs img{max-width:560px;width:100%;border:1px solid #ddd}
figcaption{font-size:.85em;color:#555}.note{color:#555;font-size:.9em}.broken{color:#b00020;font-weight:bold}
.detected{color:#b00020;font-weight:bold}
"""

_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = document.images, ok = 0, bad = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; continue; }
    bad++;
    var warn = document.createElement('p');
    warn.className = 'broken';
    warn.textContent = 'Image missing: ' + imgs[i].getAttribute('src');
    imgs[i].parentNode.insertBefore(warn, imgs[i]);
  }
  document.body.setAttribute('data-images-loaded', ok);
  document.body.setAttribute('data-images-broken', bad);
});
"""

#: Figure keys in page order, with their captions.
FIGURES = [
    ("overlay_axial", "Segmentation over the image, axial slices (anterior up, patient's right on the left)"),
    ("overlay_coronal", "Segmentation over the image, coronal slices (superior up, patient's right on the left)"),
    ("volume_curve", "LV blood-pool volume over the cardiac cycle, ED and ES marked"),
    ("thickness_ED_surface", "Epicardial wall thickness at ED (mm), from anterior and from the left"),
    ("thickness_ED_bullseye", "Mean wall thickness per AHA segment at ED (mm), apex in the centre"),
    ("thickness_ES_surface", "Epicardial wall thickness at ES (mm), from anterior and from the left"),
    ("thickness_ES_bullseye", "Mean wall thickness per AHA segment at ES (mm), apex in the centre"),
]


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _anchor(study: str) -> str:
    return "study-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in study)


def _fmt(value, unit: str = "", digits: int = 1) -> str:
    if value is None or value == "":
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{_e(value)}{unit}"


def _findings(rec: dict) -> str:
    """Short summary of a study's findings for the summary table."""
    m = rec.get("metrics", {})
    parts = []
    if "hemorrhage_ml" in m:
        det = "<span class='detected'>hemorrhage</span>" if m.get("hemorrhage_detected") else "no hemorrhage"
        parts.append(f"{det}, {_fmt(m['hemorrhage_ml'], ' mL', 2)}")
    if m.get("ejection_fraction") is not None:
        parts.append(f"EF {100 * m['ejection_fraction']:.1f} % (ED {m.get('ed_phase')}, ES {m.get('es_phase')})")
    if m.get("thickness_ed_median_mm") is not None:
        parts.append(f"thickness ED {_fmt(m['thickness_ed_median_mm'], ' mm')}, ES {_fmt(m.get('thickness_es_median_mm'), ' mm')}")
    return "; ".join(parts) or "&ndash;"


def _measurements(rec: dict) -> str:
    m = rec.get("metrics", {})
    rows = []
    labels = [("hemorrhage_detected", "Hemorrhage detected", ""), ("hemorrhage_ml", "Hemorrhage volume", " mL"),
              ("lesions", "Lesions", ""), ("brain_ml", "Brain volume", " mL"), ("phases", "Phases", ""),
              ("labelled_phases", "Labelled phases", ""), ("ed_phase", "ED phase", ""), ("es_phase", "ES phase", ""),
              ("edv_ml", "EDV", " mL"), ("esv_ml", "ESV", " mL"), ("measured_on", "ED/ES and thickness measured on", ""),
              ("model_ed_phase", "Model: ED phase", ""), ("model_es_phase", "Model: ES phase", ""), ("cleanup_voxels_changed", "Cleanup: voxels changed", ""),
              ("thickness_ed_median_mm", "Thickness ED median", " mm"), ("thickness_ed_p95_mm", "Thickness ED 95th percentile", " mm"),
              ("thickness_ed_max_mm", "Thickness ED max", " mm"), ("thickness_es_median_mm", "Thickness ES median", " mm"),
              ("thickness_es_p95_mm", "Thickness ES 95th percentile", " mm"), ("thickness_es_max_mm", "Thickness ES max", " mm")]
    for key, name, unit in labels:
        if key in m:
            v = m[key]
            text = ", ".join(f"{_e(k)} {_e(x)}" for k, x in v.items()) if isinstance(v, dict) else \
                ", ".join(map(str, v)) if isinstance(v, list) else _fmt(v, unit, 2)
            rows.append(f"<tr><th>{_e(name)}</th><td>{text}</td></tr>")
    if m.get("ejection_fraction") is not None:
        rows.append(f"<tr><th>Ejection fraction</th><td>{100 * m['ejection_fraction']:.1f} %</td></tr>")
    if m.get("model_ejection_fraction") is not None:
        rows.append(f"<tr><th>Model: ejection fraction</th><td>{100 * m['model_ejection_fraction']:.1f} %</td></tr>")
    if "min_detection_ml" in m:
        rows.append(f"<tr><th>Detection rule</th><td>present when the volume is at least {_fmt(m['min_detection_ml'], ' mL', 2)}</td></tr>")
    return "<table>" + "".join(rows) + "</table>" if rows else ""


def _study_section(rec: dict) -> str:
    sid = rec["study"]
    out = [f"<section id='{_anchor(sid)}' class='study'><h2>{_e(sid)} <span class='note'>({_e(rec['kind'])}, "
           f"<span class='{_e(rec['status'])}'>{_e(rec['status'])}</span>)</span></h2>",
           f"<p class='note'>Input: {_e(rec.get('input', ''))}. Capabilities: {_e(', '.join(rec.get('capabilities', [])) or '-')}.</p>"]
    out.append(_measurements(rec))
    for note in rec.get("notes", []):
        out.append(f"<p class='note'>{_e(note)}</p>")
    figs = rec.get("figures", {})
    base = rec.get("output", f"studies/{sid}")
    items = [(k, c) for k, c in FIGURES if k in figs]
    if items:
        out.append("<div class='figs'>")
        for key, caption in items:
            src = f"{base}/{figs[key]}"
            out.append(f"<figure><img src='{_e(src)}' alt='{_e(caption)}' data-figure='{_e(key)}'>"
                       f"<figcaption>{_e(caption)}</figcaption></figure>")
        out.append("</div>")
    files = rec.get("files", {})
    if files:
        links = ", ".join(f"<a href='{_e(base)}/{_e(v)}'>{_e(k)}</a>" for k, v in files.items())
        out.append(f"<p class='note'>Outputs: {links}</p>")
    out.append("<p><a href='#summary'>back to the summary</a></p></section>")
    return "\n".join(out)


def render_report(records: list[dict], title: str = "SegTransfer review report") -> str:
    """The HTML page of a batch's study records (as in ``batch.json``)."""
    done = [r for r in records if r["status"] != "failed"]
    failed = [r for r in records if r["status"] == "failed"]
    rows = []
    for r in records:
        name = f"<a href='#{_anchor(r['study'])}'>{_e(r['study'])}</a>" if r["status"] != "failed" else \
            f"<a href='#failed'>{_e(r['study'])}</a>"
        rows.append(f"<tr data-study='{_e(r['study'])}'><td>{name}</td><td>{_e(r['kind'])}</td>"
                    f"<td class='{_e(r['status'])}'>{_e(r['status'])}</td>"
                    f"<td>{_findings(r) if r['status'] != 'failed' else _e(r.get('reason', ''))}</td></tr>")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f"<p class='note'>{len(records)} studies: {len(done)} done, {len(failed)} failed. Generated "
        f"{_e(time.strftime('%Y-%m-%d %H:%M'))}. Results of automatic processing for review; not for diagnosis on their own.</p>",
        "<h2 id='summary'>Summary</h2><table><tr><th>Study</th><th>Kind</th><th>Status</th><th>Findings / reason</th></tr>",
        *rows, "</table>",
    ]
    if failed:
        parts.append("<h2 id='failed'>Failed studies</h2><table><tr><th>Study</th><th>Input</th><th>Reason</th></tr>")
        parts += [f"<tr class='failed-study' data-study='{_e(r['study'])}'><td>{_e(r['study'])}</td><td>{_e(r.get('input', ''))}</td>"
                  f"<td>{_e(r.get('reason', ''))}</td></tr>" for r in failed]
        parts.append("</table>")
    parts += [_study_section(r) for r in done]
    parts.append(f"<script>{_SCRIPT}</script></body></html>")
    return "\n".join(parts) + "\n"


def write_report(batch_dir: str | os.PathLike, title: str = "SegTransfer review report") -> Path:
    """Write ``report.html`` into a batch output folder from its ``batch.json`` (atomically); returns its path."""
    from ..batch.runner import BATCH_FILE

    folder = Path(batch_dir)
    try:
        records = json.loads((folder / BATCH_FILE).read_text(encoding="utf-8"))["studies"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(folder / BATCH_FILE, f"not a batch record ({exc})") from None
    return write_text(folder / REPORT_FILE, render_report(records, title))
