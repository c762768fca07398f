"""Reading and writing images, label maps (with segment names and colours), DICOM series and 4D series.

Every reader returns ``SimpleITK.Image`` objects with their LPS geometry; every writer is atomic.
"""

from .atomic import atomic_dir, atomic_path, write_text
from .images import (
    LabelImage,
    as_label_pixels,
    check_finite,
    check_same_grid,
    describe_grid,
    grid_difference,
    read_dicom_series,
    read_image,
    read_labels,
    same_grid,
    write_image,
    write_labels,
)
from .dicom4d import read_dicom4d
from .series4d import Series4D, join_4d, read_series4d, split_4d, write_series4d

__all__ = [
    "LabelImage",
    "as_label_pixels",
    "Series4D",
    "atomic_dir",
    "atomic_path",
    "check_finite",
    "check_same_grid",
    "describe_grid",
    "grid_difference",
    "read_dicom4d",
    "read_dicom_series",
    "join_4d",
    "read_image",
    "read_labels",
    "read_series4d",
    "same_grid",
    "split_4d",
    "write_image",
    "write_labels",
    "write_series4d",
    "write_text",
]
