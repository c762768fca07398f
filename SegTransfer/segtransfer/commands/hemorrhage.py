"""``segtransfer hemorrhage``: segment a head CT (volume, detection, lesions) or train a model."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``hemorrhage segment`` and ``hemorrhage train``."""
    p = sub.add_parser("hemorrhage", help="CT hemorrhage segmentation, volume in mL and detection",
                       description="Intracranial hemorrhage on head CT: a 2D U-Net over axial slices.")
    s = p.add_subparsers(dest="action", metavar="ACTION")
    s.required = True
    g = s.add_parser("segment", help="segment hemorrhage on a head CT",
                     description="Check the CT is in Hounsfield units, reorient, skull-strip, segment axial slices with a "
                     "256x256 sliding window, and map the mask back to the input grid. Writes hemorrhage.seg.nrrd, "
                     "hemorrhage.nii.gz, overlay.png, summary.json and summary.csv into --out.")
    g.add_argument("ct", type=Path, help="head CT: NIfTI, NRRD, MHA, a DICOM series folder, or an InVesalius .inv3 project")
    g.add_argument("--out", "-o", type=Path, required=True, help="output folder (written atomically)")
    g.add_argument("--model", type=Path, help="model package (default: the shipped phantom-trained demonstration model)")
    g.add_argument("--sha256", help="expected package ID of --model (as published by the sending site)")
    g.add_argument("--threads", type=int, help="CPU threads for PyTorch (default: PyTorch's choice; 1 on a machine shared with other jobs)")
    g.set_defaults(func=run_segment)
    t = s.add_parser("train", help="train a hemorrhage model on one site's CTs with masks",
                     description="Single-site training on 2D patches (positives centred on hemorrhage, negatives in the brain), "
                     "continuous Dice loss, Adam; stops when the validation loss improves by less than --min-delta over "
                     "--patience epochs, or at --max-epochs. Checkpoints every epoch; --resume continues after a crash.")
    t.add_argument("cases", type=Path, help="folder of cases: CASE/image.nii.gz + CASE/mask.nii.gz, or X.nii.gz + X_mask.nii.gz")
    t.add_argument("--out", "-o", type=Path, required=True, help="model package folder to write")
    t.add_argument("--site", default="local", help="site name recorded in the model card")
    t.add_argument("--positives", type=int, default=1000, help="positive patches per scan (default 1000)")
    t.add_argument("--negatives", type=int, default=1000, help="negative patches per scan (default 1000)")
    t.add_argument("--patch-size", type=int, default=128, help="training patch size in pixels (default 128; inference uses 256)")
    t.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (default 1e-4)")
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--max-epochs", type=int, default=200)
    t.add_argument("--patience", type=int, default=10)
    t.add_argument("--min-delta", type=float, default=1e-4)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--positive-sampling", choices=("uniform", "balanced"), default="uniform",
                   help="positive patch centres: uniform over hemorrhage voxels (default) or balanced (each lesion section "
                   "about equally often, whatever its area)")
    t.add_argument("--resume", action="store_true", help="continue from the checkpoint beside --out")
    t.set_defaults(func=run_train)


def run_segment(args: argparse.Namespace) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from ..errors import InputError
    from ..hemorrhage import default_model_path, preprocess
    from ..hemorrhage.report import check_output_folder
    from .cardiac import set_threads
    from ..io import read_image
    from ..progress import print_progress

    check_output_folder(args.out)  # before the work, so a wrong --out or --threads costs nothing
    if args.threads is not None and args.threads < 1:
        raise InputError("--threads", f"must be at least 1, got {args.threads}")
    model_path = args.model or default_model_path()
    with ThreadPoolExecutor(1) as loader:
        # torch, MONAI and the network load (and its inference copy is made) on another thread while this
        # one reads and skull-strips the CT: SimpleITK's filters release the GIL, so the two overlap
        loading = loader.submit(_load_network, model_path, args.sha256)
        if args.ct.name.endswith(".inv3"):
            from ..io.invesalius import read_inv3

            image = read_inv3(args.ct)
        else:
            image = read_image(args.ct)
        pre = preprocess(image, str(args.ct))
        network, package = loading.result()
    set_threads(args.threads)  # here, on the thread that runs the network
    from ..hemorrhage import segment
    from ..hemorrhage.report import write_outputs

    result = segment(image, network, package.description, where=str(args.ct), progress=print_progress, pre=pre)
    name = args.ct.name.split(".")[0]
    write_outputs(args.out, name, image, result, {"path": str(model_path), "sha256": package.sha256, "name": package.description["name"]})
    print(f"{name}: hemorrhage {'present' if result.detected else 'not detected'}, {result.volume_ml:.2f} mL in "
          f"{len(result.lesions)} lesion(s); outputs in {args.out}")
    return 0


def _load_network(model_path: Path, sha256: str | None):
    """The package's network, as the copy inference runs (:func:`~segtransfer.hemorrhage.infer.inference_copy`),
    and the package (verified; see :func:`segtransfer.models.load_network`)."""
    from ..hemorrhage.infer import inference_copy
    from ..models import load_network

    network, package = load_network(model_path, expected_sha256=sha256)
    return inference_copy(network), package


def run_train(args: argparse.Namespace) -> int:
    from ..hemorrhage.train import load_cases, train

    package = train(load_cases(args.cases), args.out, site=args.site, patch_size=args.patch_size, positives=args.positives,
                    negatives=args.negatives, lr=args.lr, batch_size=args.batch_size, max_epochs=args.max_epochs,
                    patience=args.patience, min_delta=args.min_delta, seed=args.seed, positive_sampling=args.positive_sampling, resume=args.resume)
    print(f"Wrote model package {args.out} (sha256 {package.sha256})")
    return 0
