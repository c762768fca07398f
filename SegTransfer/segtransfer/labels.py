"""Label values, names and colours used across SegTransfer.

Cardiac label maps: 0 background, 1 LV blood pool (papillary muscles included), 2 LV myocardium.
Head CT masks: 0 background, 1 hemorrhage.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Segment:
    """One labelled structure: integer ``value`` in the label map, display ``name``, RGB ``color`` in 0..1,
    and optionally Slicer's terminology entry string (``"Segmentation category and type - ...~SCT^..."``)."""

    value: int
    name: str
    color: tuple[float, float, float]
    terminology: str | None = None


BACKGROUND = 0
BLOOD_POOL = 1
MYOCARDIUM = 2
HEMORRHAGE = 1

CARDIAC_SEGMENTS: tuple[Segment, ...] = (
    Segment(BLOOD_POOL, "LV blood pool", (0.847, 0.396, 0.310)),
    Segment(MYOCARDIUM, "LV myocardium", (0.808, 0.624, 0.416)),
)
HEMORRHAGE_SEGMENTS: tuple[Segment, ...] = (Segment(HEMORRHAGE, "Hemorrhage", (0.863, 0.078, 0.235)),)


def default_segments(values: list[int] | tuple[int, ...], known: tuple[Segment, ...] = CARDIAC_SEGMENTS) -> list[Segment]:
    """Segments for the non-zero ``values`` of a label map: the known definition where there is one,
    otherwise ``"Label N"`` with a colour from a fixed palette."""
    palette = [(0.5, 0.68, 0.5), (0.95, 0.84, 0.57), (0.69, 0.48, 0.39), (0.44, 0.72, 0.83), (0.86, 0.96, 0.55)]
    by_value = {s.value: s for s in known}
    out = []
    for v in sorted(int(v) for v in values if int(v) != 0):
        out.append(by_value.get(v, Segment(v, f"Label {v}", palette[v % len(palette)])))
    return out
