"""MRML nodes <-> SegTransfer core objects.

Slicer works in RAS; SimpleITK images and files are LPS.  Every conversion goes through the
IJK-to-physical 4x4 matrix with the explicit flip ``LPS = diag(-1, -1, 1) @ RAS``, so oblique
directions, anisotropic spacing and origins survive both ways.  Arrays are ``[k, j, i]`` (= ``[z, y, x]``)
in both Slicer (``slicer.util.arrayFromVolume``) and SimpleITK.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicer
import vtk

from segtransfer.io import LabelImage, Series4D
from segtransfer.labels import Segment

#: RAS <-> LPS flip (its own inverse).
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _matrix_to_numpy(m: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def _numpy_to_matrix(a: np.ndarray) -> vtk.vtkMatrix4x4:
    m = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(a[r, c]))
    return m


def ijk_to_lps(image: sitk.Image) -> np.ndarray:
    """4x4 matrix from voxel index (i, j, k) to LPS mm for a 3D SimpleITK image."""
    m = np.eye(4)
    m[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
    m[:3, 3] = image.GetOrigin()
    return m


def node_ijk_to_lps(node) -> np.ndarray:
    """4x4 matrix from voxel index (i, j, k) to LPS mm for a volume node (from its IJK-to-RAS matrix)."""
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return RAS_TO_LPS @ _matrix_to_numpy(m)


def _set_geometry(image: sitk.Image, lps: np.ndarray) -> None:
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetDirection(tuple(float(d) for d in (lps[:3, :3] / spacing).ravel()))
    image.SetOrigin(tuple(float(o) for o in lps[:3, 3]))


def image_from_volume_node(node) -> sitk.Image:
    """A scalar or label-map volume node as a 3D SimpleITK image (LPS geometry, voxel values copied)."""
    arr = np.array(slicer.util.arrayFromVolume(node), copy=True)
    if arr.ndim != 3:
        raise ValueError(f"{node.GetName()}: expected a scalar 3D volume, got array shape {arr.shape}")
    image = sitk.GetImageFromArray(arr)
    _set_geometry(image, node_ijk_to_lps(node))
    return image


def update_volume_node_from_image(node, image: sitk.Image) -> None:
    """Set a volume node's voxels and geometry (RAS) from a 3D SimpleITK image (LPS)."""
    slicer.util.updateVolumeFromArray(node, sitk.GetArrayFromImage(image))
    node.SetIJKToRASMatrix(_numpy_to_matrix(RAS_TO_LPS @ ijk_to_lps(image)))
    node.Modified()


def volume_node_from_image(scene, image: sitk.Image, name: str, labelmap: bool = False):
    """Add a scalar (or label-map) volume node holding ``image`` to ``scene``; returns the node."""
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode", name)
    update_volume_node_from_image(node, image)
    return node


# ----------------------------------------------------------------------------------------------
# Segmentations


def _segment_ids(segmentation_node) -> list[str]:
    ids = vtk.vtkStringArray()
    segmentation_node.GetSegmentation().GetSegmentIDs(ids)
    return [ids.GetValue(i) for i in range(ids.GetNumberOfValues())]


def label_image_from_segmentation_node(segmentation_node, reference_volume_node, segment_ids: list[str] | None = None) -> LabelImage:
    """Export segments (all, or ``segment_ids`` in that order) to a label map on the grid of
    ``reference_volume_node``: the n-th segment gets value n.  Names, colours and terminology are kept."""
    scene = segmentation_node.GetScene()
    ids = segment_ids if segment_ids is not None else _segment_ids(segmentation_node)
    ids_array = vtk.vtkStringArray()
    for sid in ids:
        ids_array.InsertNextValue(sid)
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "segtransfer export")
    try:
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(segmentation_node, ids_array, labelmap, reference_volume_node)
        if not ok:
            raise ValueError(f"{segmentation_node.GetName()}: segments could not be exported to a label map")
        image = sitk.Cast(image_from_volume_node(labelmap), sitk.sitkUInt8 if len(ids) < 256 else sitk.sitkUInt16)
    finally:
        scene.RemoveNode(labelmap)
    segmentation = segmentation_node.GetSegmentation()
    segments = []
    for value, sid in enumerate(ids, start=1):
        seg = segmentation.GetSegment(sid)
        terminology = seg.GetTerminology() if seg.HasTerminology() else None
        segments.append(Segment(value, seg.GetName(), tuple(seg.GetColor()), terminology or None))
    return LabelImage(image, segments)


def segmentation_node_from_label_image(scene, labels: LabelImage, name: str, segmentation_node=None):
    """Import a label map into a (new or given, emptied) segmentation node: one segment per value, with the
    names, colours and terminology of ``labels.segments``.  Geometry goes through a label-map node (RAS)."""
    if segmentation_node is None:
        segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    else:
        segmentation_node.GetSegmentation().RemoveAllSegments()
    labelmap = volume_node_from_image(scene, labels.image, f"{name} labels", labelmap=True)
    try:
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation_node):
            raise ValueError(f"{name}: label map could not be imported into a segmentation")
    finally:
        scene.RemoveNode(labelmap)
    by_value = {s.value: s for s in labels.segments}
    segmentation = segmentation_node.GetSegmentation()
    for sid in _segment_ids(segmentation_node):
        seg = segmentation.GetSegment(sid)
        info = by_value.get(seg.GetLabelValue())
        if info is not None:
            seg.SetName(info.name)
            seg.SetColor(*info.color)
            if info.terminology:
                seg.SetTerminology(info.terminology)
    return segmentation_node


def add_mask_segment(segmentation_node, mask: sitk.Image, name: str, color=(1.0, 1.0, 0.0)) -> str | None:
    """Add a binary mask (non-zero = inside) as one more segment of ``segmentation_node``; returns its ID,
    or ``None`` when the mask is empty.  Used for previews such as "voxels changed by cleanup"."""
    scene = segmentation_node.GetScene()
    before = set(_segment_ids(segmentation_node))
    labelmap = volume_node_from_image(scene, sitk.Cast(mask > 0, sitk.sitkUInt8), f"{name} mask", labelmap=True)
    try:
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation_node):
            raise ValueError(f"{name}: mask could not be imported into {segmentation_node.GetName()}")
    finally:
        scene.RemoveNode(labelmap)
    added = [sid for sid in _segment_ids(segmentation_node) if sid not in before]
    if not added:
        return None
    segment = segmentation_node.GetSegmentation().GetSegment(added[0])
    segment.SetName(name)
    segment.SetColor(*color)
    return added[0]


# ----------------------------------------------------------------------------------------------
# Sequences (4D series)


def sequence_nodes_from_series(scene, series: Series4D, name: str):
    """A 4D series as sequence nodes: ``(image_sequence, label_sequence or None)``.

    Index values are the R-R percentages when known (unit ``%``), otherwise the phase numbers;
    the label sequence holds label-map nodes for the labelled phases only, at the same index values.
    """
    index_values = [f"{p:g}" for p in series.percent_rr] if series.percent_rr is not None else [str(i) for i in range(len(series))]
    images = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    images.SetIndexName("phase" if series.percent_rr is None else "cardiac phase")
    images.SetIndexUnit("" if series.percent_rr is None else "%")
    images.SetIndexType(images.NumericIndex)
    for i, phase in enumerate(series.phases):
        node = volume_node_from_image(scene, phase, f"{name} {i}")
        images.SetDataNodeAtValue(node, index_values[i])
        scene.RemoveNode(node)  # the sequence keeps its own copy
    labels = None
    if series.labels:
        labels = scene.AddNewNodeByClass("vtkMRMLSequenceNode", f"{name} labels")
        labels.SetIndexName(images.GetIndexName())
        labels.SetIndexUnit(images.GetIndexUnit())
        labels.SetIndexType(images.NumericIndex)
        for i in sorted(series.labels):
            node = volume_node_from_image(scene, series.labels[i], f"{name} labels {i}", labelmap=True)
            labels.SetDataNodeAtValue(node, index_values[i])
            scene.RemoveNode(node)
    return images, labels


def series_from_sequence_nodes(image_sequence, label_sequence=None, labelled: dict[int, object] | None = None) -> Series4D:
    """Sequence node(s) -> :class:`Series4D`.

    ``label_sequence``: label-map nodes at some of the image sequence's index values; ``labelled``:
    alternatively phase index -> label-map volume node.  Percentages are taken from the index values
    when the index unit is ``%``.
    """
    n = image_sequence.GetNumberOfDataNodes()
    phases, values = [], []
    for i in range(n):
        phases.append(image_from_volume_node(image_sequence.GetNthDataNode(i)))
        values.append(image_sequence.GetNthIndexValue(i))
    percent = [float(v) for v in values] if image_sequence.GetIndexUnit() == "%" else None
    labels = {}
    if label_sequence is not None:
        for j in range(label_sequence.GetNumberOfDataNodes()):
            value = label_sequence.GetNthIndexValue(j)
            if value not in values:
                raise ValueError(f"{label_sequence.GetName()}: label index value {value} is not a phase of {image_sequence.GetName()}")
            labels[values.index(value)] = sitk.Cast(image_from_volume_node(label_sequence.GetNthDataNode(j)), sitk.sitkUInt8)
    for i, node in (labelled or {}).items():
        labels[int(i)] = sitk.Cast(image_from_volume_node(node), sitk.sitkUInt8)
    return Series4D(phases, percent, labels)


# ----------------------------------------------------------------------------------------------
# Models and tables


def model_node_from_file(scene, path: str | os.PathLike, scalar_name: str | None = None, name: str | None = None,
                         color_node_id: str = "vtkMRMLColorTableNodeFileViridis.txt"):
    """Load a VTK surface file as a model node; with ``scalar_name``, show that per-vertex array as a colour map
    (active scalar, scalar visibility on, range from the data, colour table ``color_node_id``)."""
    path = Path(path)
    model = scene.AddNewNodeByClass("vtkMRMLModelNode", name or path.name.split(".")[0])
    storage = scene.AddNewNodeByClass("vtkMRMLModelStorageNode")
    storage.SetFileName(str(path))
    model.SetAndObserveStorageNodeID(storage.GetID())
    if not storage.ReadData(model):
        scene.RemoveNode(model)
        scene.RemoveNode(storage)
        raise ValueError(f"{path}: cannot be read as a surface model")
    display = scene.AddNewNodeByClass("vtkMRMLModelDisplayNode")
    model.SetAndObserveDisplayNodeID(display.GetID())
    if scalar_name:
        if model.GetPolyData().GetPointData().GetArray(scalar_name) is None:
            raise ValueError(f"{path}: surface has no per-vertex array '{scalar_name}'")
        display.SetActiveScalarName(scalar_name)
        display.SetActiveAttributeLocation(vtk.vtkAssignAttribute.POINT_DATA)
        display.SetScalarVisibility(True)
        display.SetScalarRangeFlag(display.UseDataScalarRange)
        display.SetAndObserveColorNodeID(color_node_id)
    return model


def table_node_from_rows(scene, rows: list[dict], name: str, table_node=None):
    """A table node with one column per key of ``rows`` (numbers as double columns, others as strings)."""
    table_node = table_node or scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    table_node.RemoveAllColumns()
    keys = list(dict.fromkeys(k for row in rows for k in row))
    for key in keys:
        values = [row.get(key) for row in rows]
        numeric = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in values)
        column = vtk.vtkDoubleArray() if numeric else vtk.vtkStringArray()
        column.SetName(str(key))
        for v in values:
            column.InsertNextValue(float(v) if numeric else ("" if v is None else str(v)))
        table_node.AddColumn(column)
    return table_node


def table_node_from_csv(scene, path: str | os.PathLike, name: str | None = None):
    """A table node from a CSV file (numeric columns become double columns)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))

    def parse(v: str):
        try:
            return float(v)
        except (TypeError, ValueError):
            return v

    return table_node_from_rows(scene, [{k: parse(v) for k, v in r.items()} for r in rows], name or Path(path).stem)


def rows_from_table_node(table_node) -> list[dict]:
    """The rows of a table node as dicts (numbers as float, others as str)."""
    table = table_node.GetTable()
    out = []
    for r in range(table.GetNumberOfRows()):
        row = {}
        for c in range(table.GetNumberOfColumns()):
            column = table.GetColumn(c)
            row[column.GetName()] = column.GetValue(r)
        out.append(row)
    return out
