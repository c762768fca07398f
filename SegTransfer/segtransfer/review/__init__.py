"""The review report of a batch: figures (overlays, volume curve, thickness surfaces and bullseye)
and one HTML page that opens offline.

* :mod:`.figures`: the PNG figures (matplotlib Agg, Pillow);
* :mod:`.report`: the HTML page from a batch's records.
"""

from .report import REPORT_FILE, render_report, write_report

__all__ = ["REPORT_FILE", "render_report", "write_report"]
