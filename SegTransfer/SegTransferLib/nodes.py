"""MRML nodes <-> SegTransfer core objects.

Slicer works in RAS; SimpleITK images and files are LPS.  Every conversion goes through the
IJK-to-physical 4x4 matrix with the explicit flip ``LPS = diag(-1, -1, 1) @ RAS``, so oblique
directions, anisotropic spacing and origins survive both ways.  Arrays are ``[k, j, i]`` (= ``[z, y, x]``)
in both Slicer (``slicer.util.arrayFromVolume``) and SimpleITK.

Everything here needs only Slicer's MRML libraries (the application or ``slicer-core``), not Qt.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicer
import vtk

from segtransfer.io import LabelImage, Series4D, as_label_pixels
from segtransfer.labels import Segment, default_segments

#: RAS <-> LPS flip (its own inverse).
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: Colour table Slicer's model display uses by default for scalars (from Slicer's colour files).
VIRIDIS_COLOR_NODE_ID = "vtkMRMLColorTableNodeFileViridis.txt"


def folder_name(name: str, default: str) -> str:
    """A node name as a folder name: letters, digits, ``-``, ``_`` and ``.`` kept, anything else ``_``,
    no leading or trailing dots/underscores; ``default`` when nothing is left."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    return cleaned or default


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
    if node is None or node.GetImageData() is None:
        raise ValueError(f"{node.GetName() if node is not None else 'volume'}: the volume node holds no image")
    arr = np.array(slicer.util.arrayFromVolume(node), copy=True)
    if arr.ndim != 3:
        raise ValueError(f"{node.GetName()}: expected a scalar 3D volume, got array shape {arr.shape}")
    image = sitk.GetImageFromArray(arr)
    _set_geometry(image, node_ijk_to_lps(node))
    return image


def update_volume_node_from_image(node, image: sitk.Image) -> None:
    """Set a volume node's voxels and geometry (RAS) from a 3D SimpleITK image (LPS)."""
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{node.GetName()}: expected a scalar 3D image, got {image.GetDimension()}D with "
                         f"{image.GetNumberOfComponentsPerPixel()} components")
    slicer.util.updateVolumeFromArray(node, sitk.GetArrayFromImage(image))
    node.SetIJKToRASMatrix(_numpy_to_matrix(RAS_TO_LPS @ ijk_to_lps(image)))
    node.Modified()


def volume_node_from_image(scene, image: sitk.Image, name: str, labelmap: bool = False, display: bool = True):
    """Add a scalar (or label-map) volume node holding ``image`` to ``scene``; returns the node.
    ``display``: also create its default display node (off for nodes that only carry data)."""
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode", name)
    update_volume_node_from_image(node, image)
    if display:
        node.CreateDefaultDisplayNodes()
    return node


# ----------------------------------------------------------------------------------------------
# Segmentations


def ensure_segmentation_converters() -> None:
    """Register Slicer's binary-labelmap <-> closed-surface conversion rules if none are registered.

    The Segmentations module registers them when the application starts; without them a segmentation
    cannot be copied (e.g. into a sequence).  Outside the application (``slicer-core``) nothing else
    registers them, so this does; inside the application it finds them registered and does nothing.
    """
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if len(factory.GetConverterRules()) == 0:
        factory.RegisterConverterRule(slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule())
        factory.RegisterConverterRule(slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule())


def list_segment_ids(segmentation_node) -> list[str]:
    """Segment IDs of a segmentation node, in segment order."""
    ids = vtk.vtkStringArray()
    segmentation_node.GetSegmentation().GetSegmentIDs(ids)
    return [ids.GetValue(i) for i in range(ids.GetNumberOfValues())]


def label_image_from_segmentation_node(segmentation_node, reference_volume_node, segment_ids: list[str] | None = None) -> LabelImage:
    """Export segments (all, or ``segment_ids`` in that order) to a label map on the grid of
    ``reference_volume_node``: the n-th segment gets value n.  Names, colours and terminology are kept."""
    ensure_segmentation_converters()
    if reference_volume_node is None:
        raise ValueError(f"{segmentation_node.GetName()}: a reference volume is needed to export segments")
    scene = segmentation_node.GetScene()
    ids = segment_ids if segment_ids is not None else list_segment_ids(segmentation_node)
    if not ids:
        raise ValueError(f"{segmentation_node.GetName()}: the segmentation has no segments")
    ids_array = vtk.vtkStringArray()
    for sid in ids:
        ids_array.InsertNextValue(sid)
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "segtransfer export")
    try:
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentation_node, ids_array, labelmap, reference_volume_node)
        if not ok:
            raise ValueError(f"{segmentation_node.GetName()}: segments could not be exported to a label map")
        image = sitk.Cast(image_from_volume_node(labelmap), sitk.sitkUInt8 if len(ids) < 256 else sitk.sitkUInt16)
    finally:
        display = labelmap.GetDisplayNode()
        scene.RemoveNode(labelmap)
        if display is not None:
            scene.RemoveNode(display)
    segmentation = segmentation_node.GetSegmentation()
    segments = []
    for value, sid in enumerate(ids, start=1):
        seg = segmentation.GetSegment(sid)
        terminology = seg.GetTerminology() if seg.HasTerminology() else None
        segments.append(Segment(value, seg.GetName(), tuple(seg.GetColor()), terminology or None))
    return LabelImage(image, segments)


def _import_labelmap(segmentation_node, image: sitk.Image, name: str) -> list[str]:
    """Import a label image into ``segmentation_node`` (one segment per non-zero value, geometry through a
    label-map node in RAS); returns the IDs of the segments added."""
    scene = segmentation_node.GetScene()
    before = set(list_segment_ids(segmentation_node))
    labelmap = volume_node_from_image(scene, image, f"{name} labels", labelmap=True, display=False)
    try:
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation_node):
            raise ValueError(f"{name}: label map could not be imported into {segmentation_node.GetName()}")
    finally:
        scene.RemoveNode(labelmap)
    return [sid for sid in list_segment_ids(segmentation_node) if sid not in before]


def segmentation_node_from_label_image(scene, labels: LabelImage, name: str, segmentation_node=None):
    """Import a label map into a (new or given, emptied) segmentation node: one segment per value, with the
    names, colours and terminology of ``labels.segments``.  The node's reference geometry is the label
    map's grid.  Returns the segmentation node."""
    ensure_segmentation_converters()
    if segmentation_node is None:
        segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        segmentation_node.CreateDefaultDisplayNodes()
    else:
        segmentation_node.GetSegmentation().RemoveAllSegments()
    by_value = {s.value: s for s in labels.segments}
    segmentation = segmentation_node.GetSegmentation()
    for sid in _import_labelmap(segmentation_node, labels.image, name):
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
    added = _import_labelmap(segmentation_node, sitk.Cast(mask > 0, sitk.sitkUInt8), name)
    if not added:
        return None
    segment = segmentation_node.GetSegmentation().GetSegment(added[0])
    segment.SetName(name)
    segment.SetColor(*color)
    return added[0]


def segmentation_node_from_file(scene, path: str | os.PathLike, name: str | None = None):
    """Read a ``.seg.nrrd`` (or any segmentation file Slicer reads) with Slicer's own segmentation storage
    node, as ``slicer.util.loadSegmentation`` does: segment names, colours and terminology as stored."""
    ensure_segmentation_converters()
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: segmentation file not found")
    # The storage node's ITK reader ends the whole process on a corrupt or truncated file (seen with
    # slicer-core); SimpleITK's reader of the same file raises instead, so read it once with SimpleITK first.
    try:
        sitk.ReadImage(str(path))
    except RuntimeError:
        raise ValueError(f"{path}: cannot be read as a segmentation (corrupt or not an image file)") from None
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name or path.name.split(".")[0])
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    node.SetAndObserveStorageNodeID(storage.GetID())
    if not storage.ReadData(node):
        scene.RemoveNode(node)
        scene.RemoveNode(storage)
        raise ValueError(f"{path}: cannot be read as a segmentation")
    node.CreateDefaultDisplayNodes()
    return node


def label_image_from_node(node, reference_volume_node=None, segments: list[Segment] | None = None) -> LabelImage:
    """A label-map volume node or a segmentation node as a :class:`LabelImage`.

    A label map keeps its own grid and values (segments: ``segments`` or the defaults for its values);
    a segmentation is exported onto the grid of ``reference_volume_node`` (n-th segment = value n).
    """
    if node is None:
        raise ValueError("Select a segmentation or label map.")
    if node.IsA("vtkMRMLSegmentationNode"):
        return label_image_from_segmentation_node(node, reference_volume_node)
    image = as_label_pixels(image_from_volume_node(node), node.GetName())
    values = [int(v) for v in np.unique(sitk.GetArrayViewFromImage(image)) if v != 0]
    return LabelImage(image, list(segments) if segments is not None else default_segments(values))


# ----------------------------------------------------------------------------------------------
# Sequences (4D series)


def _new_sequence(scene, name: str, percent: bool):
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    sequence.SetIndexName("cardiac phase" if percent else "phase")
    sequence.SetIndexUnit("%" if percent else "")
    sequence.SetIndexType(sequence.NumericIndex)
    return sequence


def sequence_nodes_from_series(scene, series: Series4D, name: str, labels_as: str = "labelmap",
                               segments: list[Segment] | None = None):
    """A 4D series as sequence nodes: ``(image_sequence, label_sequence or None)``.

    Index values are the R-R percentages when known (unit ``%``), otherwise the phase numbers.  The label
    sequence holds the labelled phases only, at the same index values, as label-map nodes
    (``labels_as="labelmap"``) or as segmentation nodes with ``segments``' names and colours
    (``labels_as="segmentation"``; default segments for the values present).
    """
    if labels_as not in ("labelmap", "segmentation"):
        raise ValueError(f"labels_as must be 'labelmap' or 'segmentation', not {labels_as!r}")
    series.validate(name)
    percent = series.percent_rr is not None
    index_values = [f"{p:g}" for p in series.percent_rr] if percent else [str(i) for i in range(len(series))]
    images = _new_sequence(scene, name, percent)
    for i, phase in enumerate(series.phases):
        node = volume_node_from_image(scene, phase, f"{name} {i}", display=False)
        images.SetDataNodeAtValue(node, index_values[i])
        scene.RemoveNode(node)  # the sequence keeps its own copy
    labels = None
    if series.labels:
        labels = _new_sequence(scene, f"{name} labels", percent)
        for i in sorted(series.labels):
            if labels_as == "labelmap":
                node = volume_node_from_image(scene, series.labels[i], f"{name} labels {i}", labelmap=True, display=False)
            else:
                image = series.labels[i]
                values = [int(v) for v in np.unique(sitk.GetArrayViewFromImage(image)) if v != 0]
                node = segmentation_node_from_label_image(
                    scene, LabelImage(image, list(segments) if segments is not None else default_segments(values)), f"{name} labels {i}")
            labels.SetDataNodeAtValue(node, index_values[i])
            display = node.GetDisplayNode()
            scene.RemoveNode(node)
            if display is not None:
                scene.RemoveNode(display)
    return images, labels


def _phase_labels(node, reference_node) -> sitk.Image:
    """One labelled phase (label-map or segmentation node) as a uint8 label image on the phase's grid."""
    if node.IsA("vtkMRMLSegmentationNode"):
        return sitk.Cast(label_image_from_segmentation_node(node, reference_node).image, sitk.sitkUInt8)
    return sitk.Cast(image_from_volume_node(node), sitk.sitkUInt8)


def series_from_sequence_nodes(image_sequence, label_sequence=None, labelled: dict[int, object] | None = None) -> Series4D:
    """Sequence node(s) -> :class:`Series4D`.

    ``label_sequence``: label-map or segmentation nodes at some of the image sequence's index values
    (segmentations are exported onto that phase's grid, n-th segment = value n); ``labelled``:
    alternatively phase index -> label-map or segmentation node.  Percentages are taken from the index
    values when the index unit is ``%``.
    """
    ensure_segmentation_converters()
    n = image_sequence.GetNumberOfDataNodes()
    if n == 0:
        raise ValueError(f"{image_sequence.GetName()}: the sequence holds no phases")
    phase_nodes, phases, values = [], [], []
    for i in range(n):
        node = image_sequence.GetNthDataNode(i)
        if not node.IsA("vtkMRMLScalarVolumeNode"):
            raise ValueError(f"{image_sequence.GetName()}: item {i} is a {node.GetClassName()}, not a volume")
        phase_nodes.append(node)
        phases.append(image_from_volume_node(node))
        values.append(image_sequence.GetNthIndexValue(i))
    percent = [float(v) for v in values] if image_sequence.GetIndexUnit() == "%" else None
    labels = {}
    if label_sequence is not None:
        for j in range(label_sequence.GetNumberOfDataNodes()):
            value = label_sequence.GetNthIndexValue(j)
            if value not in values:
                raise ValueError(f"{label_sequence.GetName()}: label index value {value} is not a phase of {image_sequence.GetName()}")
            i = values.index(value)
            labels[i] = _phase_labels(label_sequence.GetNthDataNode(j), phase_nodes[i])
    for i, node in (labelled or {}).items():
        i = int(i)
        if not 0 <= i < n:
            raise ValueError(f"{node.GetName()}: phase {i} is not a phase of {image_sequence.GetName()} ({n} phases)")
        labels[i] = _phase_labels(node, phase_nodes[i])
    series = Series4D(phases, percent, labels)
    series.validate(image_sequence.GetName())
    return series


# ----------------------------------------------------------------------------------------------
# Models, tables and plots


def scalar_color_node_id(scene, preferred: str = VIRIDIS_COLOR_NODE_ID) -> str:
    """ID of a colour table for a scalar colour map: ``preferred`` when the scene has it (inside the
    application, Slicer's Viridis table), else Slicer's built-in Rainbow table, added to the scene the way
    Slicer's colour logic adds it (singleton ID ``vtkMRMLColorTableNodeRainbow``) when it is missing."""
    if scene.GetNodeByID(preferred) is not None:
        return preferred
    rainbow_id = slicer.vtkMRMLColorLogic.GetColorTableNodeID(slicer.vtkMRMLColorTableNode.Rainbow)
    if scene.GetNodeByID(rainbow_id) is None:
        table = slicer.vtkMRMLColorTableNode()
        table.SetTypeToRainbow()
        table.SetSingletonTag(table.GetTypeAsString())
        table.SetName(table.GetTypeAsString())
        scene.AddNode(table)
    return rainbow_id


def model_node_from_file(scene, path: str | os.PathLike, scalar_name: str | None = None, name: str | None = None,
                         color_node_id: str = VIRIDIS_COLOR_NODE_ID):
    """Load a VTK surface file (LPS or RAS, as its header says) as a model node with a display node.  With
    ``scalar_name``, show that per-vertex array as a colour map: active scalar, scalar visibility on, range
    from the data, colour table ``color_node_id`` (see :func:`scalar_color_node_id`)."""
    path = Path(path)
    model = scene.AddNewNodeByClass("vtkMRMLModelNode", name or path.name.split(".")[0])
    storage = scene.AddNewNodeByClass("vtkMRMLModelStorageNode")
    storage.SetFileName(str(path))
    model.SetAndObserveStorageNodeID(storage.GetID())
    if not path.is_file() or not storage.ReadData(model):
        scene.RemoveNode(model)
        scene.RemoveNode(storage)
        raise ValueError(f"{path}: cannot be read as a surface model")
    if scalar_name and model.GetPolyData().GetPointData().GetArray(scalar_name) is None:
        scene.RemoveNode(model)
        scene.RemoveNode(storage)
        raise ValueError(f"{path}: surface has no per-vertex array '{scalar_name}'")
    model.CreateDefaultDisplayNodes()
    display = model.GetDisplayNode()
    if scalar_name:
        display.SetActiveScalarName(scalar_name)
        display.SetActiveAttributeLocation(vtk.vtkAssignAttribute.POINT_DATA)
        display.SetScalarRangeFlag(display.UseDataScalarRange)
        display.SetAndObserveColorNodeID(scalar_color_node_id(scene, color_node_id))
        display.SetScalarVisibility(True)
    return model


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def table_node_from_rows(scene, rows: list[dict], name: str, table_node=None):
    """A table node with one column per key of ``rows`` (in first-seen order): a column whose values are all
    numbers (or missing, stored as NaN) becomes a double column, any other a string column."""
    table_node = table_node or scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    table_node.RemoveAllColumns()
    keys = list(dict.fromkeys(k for row in rows for k in row))
    for key in keys:
        values = [row.get(key) for row in rows]
        numeric = any(_is_number(v) for v in values) and all(v is None or _is_number(v) for v in values)
        column = vtk.vtkDoubleArray() if numeric else vtk.vtkStringArray()
        column.SetName(str(key))
        for v in values:
            if numeric:
                column.InsertNextValue(math.nan if v is None else float(v))
            else:
                column.InsertNextValue("" if v is None else str(v))
        table_node.AddColumn(column)
    table_node.Modified()
    return table_node


def table_node_from_csv(scene, path: str | os.PathLike, name: str | None = None):
    """A table node from a CSV file with a header row (columns whose cells all parse as numbers become
    double columns; empty cells in them become NaN)."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{path}: cannot be read as CSV ({e})") from e

    def parse(v: str | None):
        if v is None or v == "":
            return None
        try:
            return float(v)
        except ValueError:
            return v

    return table_node_from_rows(scene, [{k: parse(v) for k, v in r.items()} for r in rows], name or path.stem)


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


def plot_chart_from_table(scene, table_node, x_column: str, y_columns: list[str], name: str, y_title: str = ""):
    """A plot chart node with one line series per ``y_columns`` entry against ``x_column`` of ``table_node``
    (e.g. a training curve: loss per epoch).  Returns the chart node."""
    table = table_node.GetTable()
    present = {table.GetColumn(c).GetName() for c in range(table.GetNumberOfColumns())}
    missing = [c for c in [x_column, *y_columns] if c not in present]
    if missing:
        raise ValueError(f"{table_node.GetName()}: no column {', '.join(missing)}")
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
    chart.SetTitle(name)
    chart.SetXAxisTitle(x_column)
    chart.SetYAxisTitle(y_title)
    for column in y_columns:
        series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{name} {column}")
        series.SetAndObserveTableNodeID(table_node.GetID())
        series.SetXColumnName(x_column)
        series.SetYColumnName(column)
        series.SetPlotType(series.PlotTypeScatter)
        series.SetMarkerStyle(series.MarkerStyleCircle)
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
    return chart
