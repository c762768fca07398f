"""Multi-site learning without moving data: cyclic weight transfer and federated averaging on NVIDIA
FLARE, and the per-site evaluation table.

* :mod:`.task`: the site task interface (train N local epochs from given weights on this site's own
  data; return weights, sample count and local metrics) and the registry of task kinds;
  :mod:`.hemorrhage_task` is the head-CT hemorrhage kind.
* :mod:`.weights`: weights as exchanged (``name -> numpy array``), checks and model packages.
* :mod:`.convergence`: the source study's convergence rule on the sites' sample-weighted validation loss.
* :mod:`.flare_site`, :mod:`.flare_server`: the FLARE components that sites and server run from the
  installed package (executor, outgoing-result audit; the cyclic and FedAvg controllers with the
  convergence rule, model persistor); :mod:`.flare_job` builds the cyclic and FedAvg jobs, runs them
  in the FLARE simulator and exports them for deployment.
* :mod:`.flare_eval`: FLARE's cross-site model evaluation (each site evaluates on its own test set and
  returns per-scan metrics only).
* :mod:`.evaluation`: every model on every site's test set; Dice, Pearson of volumes, Wilcoxon; site
  metrics files and their merge.
* :mod:`.phantom_sites`: phantom hospitals (training and held-out sites) with known truth.

``nvflare`` is an optional extra (``pip install segtransfer[multisite]``); only the FLARE modules
import it.
"""
