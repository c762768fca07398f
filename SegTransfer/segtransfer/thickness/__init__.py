"""LV myocardial wall thickness by Laplace's equation and streamlines (or the Eulerian PDEs).

* :mod:`.boundaries`: endocardium, epicardium and no-flux (basal cut, LVOT) faces;
* :mod:`.laplace`: the finite-volume Laplace solve (conjugate gradients; Jacobi baseline);
* :mod:`.surface`: the epicardial triangle mesh on the label boundary;
* :mod:`.streamlines`: RK4 streamlines from the epicardium to the endocardium;
* :mod:`.subvoxel`: both ends of each streamline onto the sub-voxel boundaries;
* :mod:`.eulerian`: Yezzi-Prince thickness without tracing;
* :mod:`.compute`: one label map -> thickness per epicardial vertex;
* :mod:`.report`: studies and 4D series, output files, comparison of two sets of statistics;
* :mod:`.vtkio`: legacy-VTK surfaces and polylines.
"""

from .compute import METHODS, ThicknessResult, compute_thickness
from .report import (
    compare_statistics,
    comparison_markdown,
    phase_roles,
    read_statistics,
    statistics_rows,
    thickness_for_series,
    write_study,
)

__all__ = [
    "METHODS",
    "ThicknessResult",
    "compare_statistics",
    "comparison_markdown",
    "compute_thickness",
    "phase_roles",
    "read_statistics",
    "statistics_rows",
    "thickness_for_series",
    "write_study",
]
