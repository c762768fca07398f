"""The 4D cardiac model: training and transfer-learning fine-tuning on sparse ED/ES labels, 4D inference,
and the source study's experiment on phantoms.

* :mod:`.network`: one MONAI 3D U-Net shared by every phase, its package description, encoder split;
* :mod:`.data`: phases on the model grid, the labelled phases of a dataset manifest as arrays;
* :mod:`.train`: :func:`train_cardiac` (scratch or from a partner package) and the per-epoch step
  :func:`train_epoch`;
* :mod:`.infer`: :func:`segment_series` (every phase, volume curve, ED/ES, EF) and its outputs;
* :mod:`.phantom_data` and :mod:`.experiment`: two-site phantom datasets and the TL-vs-scratch run.
"""

from .infer import CardiacResult, segment_series, write_result
from .network import choose_device, description
from .train import evaluate, load_cardiac_network, train_cardiac, train_epoch

__all__ = ["CardiacResult", "choose_device", "description", "evaluate", "load_cardiac_network", "segment_series", "train_cardiac",
           "train_epoch", "write_result"]
