"""The 4D cardiac model: training and transfer-learning fine-tuning on sparse ED/ES labels, 4D inference,
and the source study's experiment on phantoms.

* :mod:`.network`: one MONAI 3D U-Net shared by every phase, its package description, encoder split;
* :mod:`.data`: phases on the model grid, the labelled phases of a dataset manifest as arrays;
* :mod:`.train`: :func:`train_cardiac` (scratch or from a partner package) and the per-epoch step
  :func:`train_epoch`;
* :mod:`.infer`: :func:`segment_series` (every phase, volume curve, ED/ES, EF) and its outputs;
* :mod:`.phantom_data` and :mod:`.experiment`: two-site phantom datasets and the TL-vs-scratch run.
"""

from ..lazy import lazy_exports

_EXPORTS = {"CardiacResult": ".infer", "segment_series": ".infer", "write_result": ".infer",
            "choose_device": ".network", "description": ".network",
            "evaluate": ".train", "load_cardiac_network": ".train", "train_cardiac": ".train", "train_epoch": ".train"}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)  # torch and MONAI load on first use
__all__ = sorted(_EXPORTS)
