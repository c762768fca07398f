"""``segtransfer cardiac``: train or fine-tune the 4D cardiac model, segment a 4D series, run the
transfer-learning experiment on phantoms."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cardiac.network import DEFAULT_CHANNELS, DEFAULT_SPACING_MM


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``cardiac train``, ``cardiac segment`` and ``cardiac experiment``."""
    p = sub.add_parser("cardiac", help="4D cardiac LV model: training/fine-tuning, segmentation, the TL experiment",
                       description="LV blood pool and myocardium in every phase of 4D cardiac CT with one 3D U-Net shared by all phases.")
    s = p.add_subparsers(dest="action", metavar="ACTION")
    s.required = True

    t = s.add_parser("train", help="train from random init or fine-tune a partner's package on a sparse-4D manifest",
                     description="Adam (lr 1e-3 from scratch, 1e-4 from --partner), learning rate x --gamma per epoch, multi-class "
                     "Dice loss on labelled phases only, validation Dice per label each epoch, early stopping after --patience "
                     "epochs without improvement, best epoch kept. Checkpoints every epoch (atomic) beside --out; --resume "
                     "continues after a crash. Writes a model package whose card names the partner package.")
    t.add_argument("manifest", type=Path, help="sparse-4D dataset manifest (segtransfer sparse4d manifest)")
    t.add_argument("--out", "-o", type=Path, required=True, help="model package to write (folder, or .zip)")
    t.add_argument("--partner", type=Path, help="partner model package to fine-tune (folder or .zip); default: random init")
    t.add_argument("--partner-sha256", help="package ID the partner published for --partner")
    t.add_argument("--cases", type=int, help="train on the first N training studies (by id) only")
    t.add_argument("--lr", type=float, help="learning rate (default 1e-3 from scratch, 1e-4 with --partner)")
    t.add_argument("--gamma", type=float, default=0.9, help="exponential learning-rate decay per epoch (default 0.9)")
    t.add_argument("--max-epochs", type=int, default=50)
    t.add_argument("--patience", type=int, default=10, help="stop after this many epochs without a better validation Dice")
    t.add_argument("--batch-size", type=int, default=2, help="phases per optimizer step (default 2)")
    t.add_argument("--freeze-encoder", action="store_true", help="train only the decoder (fine-tuning)")
    t.add_argument("--encoder-lr-factor", type=float, default=1.0, help="encoder learning rate = lr x this (default 1)")
    t.add_argument("--spacing", type=float, nargs=3, default=list(DEFAULT_SPACING_MM), metavar=("X", "Y", "Z"),
                   help="model grid spacing in mm, from random init only (default 4 4 4; a partner package fixes its own)")
    t.add_argument("--channels", type=int, nargs="+", default=list(DEFAULT_CHANNELS), help="U-Net feature widths, from random init only")
    t.add_argument("--name", help="model name in the package")
    t.add_argument("--site", default="local", help="site name recorded in the model card")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto (GPU when available), cpu or cuda")
    t.add_argument("--threads", type=int, help="CPU threads for PyTorch (default: PyTorch's choice; 1 on a machine shared with other jobs)")
    t.add_argument("--checkpoint-dir", type=Path, help="checkpoint folder (default: OUT.checkpoints)")
    t.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    t.set_defaults(func=run_train)

    g = s.add_parser("segment", help="segment every phase of a 4D series; LV volume curve, ED/ES, ejection fraction",
                     description="Each phase is resampled to the model grid, segmented with a sliding window, and the labels "
                     "mapped back to the input grid. Writes labels4d.nii.gz, phase_NN.seg.nrrd, volume_curve.csv and "
                     "summary.json into --out (atomically).")
    g.add_argument("series", type=Path, help="4D series: a folder with series.json, or a 4D NIfTI/NRRD file")
    g.add_argument("--model", type=Path, required=True, help="cardiac model package (folder or .zip)")
    g.add_argument("--sha256", help="expected package ID of --model")
    g.add_argument("--out", "-o", type=Path, required=True, help="output folder")
    g.add_argument("--overlap", type=float, default=0.25, help="sliding-window overlap (default 0.25)")
    g.add_argument("--device", default="auto", help="auto (GPU when available), cpu or cuda")
    g.add_argument("--threads", type=int, help="CPU threads for PyTorch (default: PyTorch's choice; 1 on a machine shared with other jobs)")
    g.set_defaults(func=run_segment)

    e = s.add_parser("experiment", help="the source study's TL-vs-scratch experiment on phantoms",
                     description="Site 1 trains the partner model on dense labels; for each number of site-2 training cases "
                     "(ED/ES labels only), random init vs fine-tuning from the partner, mean and max Dice on a held-out site-2 "
                     "test set, the un-tuned partner as reference, and wall-thickness correlation with the truth before and "
                     "after fine-tuning. Writes dice.csv, thickness.csv, runs.csv, experiment.json and dice.png into --out.")
    e.add_argument("--out", "-o", type=Path, required=True, help="output folder")
    mode = e.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small configuration (under 20 min on 2 CPU cores)")
    mode.add_argument("--full", action="store_true", help="the study's configuration (n = 5, 10, ..., 30; hours on CPU, use a GPU)")
    e.add_argument("--sizes", type=int, nargs="+", help="site-2 training set sizes (overrides the mode's)")
    e.add_argument("--epochs", type=int, help="maximum epochs per site-2 run (overrides the mode's)")
    e.add_argument("--partner-epochs", type=int, help="maximum epochs of the partner model at site 1 (overrides the mode's)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device", default="auto", help="auto (GPU when available), cpu or cuda")
    e.add_argument("--threads", type=int, help="CPU threads for PyTorch (default: PyTorch's choice; 1 on a machine shared with other jobs)")
    e.set_defaults(func=run_experiment)


def set_threads(threads: int | None) -> None:
    """Apply ``--threads``: with several processes on few cores, OpenMP threads spinning against each
    other can slow PyTorch on the CPU many times over; one thread per process avoids it."""
    if threads is not None:
        import torch

        from ..errors import InputError

        if threads < 1:
            raise InputError("--threads", f"must be at least 1, got {threads}")
        torch.set_num_threads(threads)


def run_train(args: argparse.Namespace) -> int:
    from ..cardiac.train import train_cardiac

    set_threads(args.threads)
    package = train_cardiac(args.manifest, args.out, partner=args.partner, partner_sha256=args.partner_sha256, cases=args.cases, lr=args.lr,
                            gamma=args.gamma, max_epochs=args.max_epochs, patience=args.patience, batch_size=args.batch_size,
                            freeze_encoder=args.freeze_encoder, encoder_lr_factor=args.encoder_lr_factor, seed=args.seed,
                            spacing_mm=args.spacing, channels=args.channels, name=args.name, site=args.site,
                            checkpoint_dir=args.checkpoint_dir, resume=args.resume, device=args.device)
    v = package.card["validation"]
    print(f"Wrote model package {args.out} (sha256 {package.sha256}); best epoch {v['best_epoch']}: validation Dice "
          f"pool {v['dice_blood_pool']:.3f}, myocardium {v['dice_myocardium']:.3f}")
    return 0


def run_segment(args: argparse.Namespace) -> int:
    from ..cardiac.infer import check_output_folder, segment_series, write_result
    from ..cardiac.network import choose_device
    from ..cardiac.train import load_cardiac_network
    from ..io import read_series4d
    from ..progress import print_progress

    check_output_folder(args.out)  # before the work, so a wrong --out costs nothing
    set_threads(args.threads)
    device = choose_device(args.device)
    series = read_series4d(args.series)
    network, package = load_cardiac_network(args.model, args.sha256, device)
    result = segment_series(series, network, package.description, device=device, overlap=args.overlap, where=args.series,
                            progress=print_progress)
    write_result(args.out, result, package.description, series,
                 {"path": str(args.model), "sha256": package.sha256, "name": package.name}, str(args.series))
    print(f"{args.series}: {len(series)} phases, ED phase {result.ed_index} ({result.pool_ml[result.ed_index]:.1f} mL), ES phase "
          f"{result.es_index} ({result.pool_ml[result.es_index]:.1f} mL), EF {100 * result.ejection_fraction:.1f}%; outputs in {args.out}")
    return 0


def run_experiment(args: argparse.Namespace) -> int:
    from ..cardiac.experiment import FULL, QUICK, run_experiment as experiment

    set_threads(args.threads)
    config = dict(FULL if args.full else QUICK)
    if args.sizes:
        config["sizes"] = list(args.sizes)
    if args.epochs:
        config["max_epochs"] = int(args.epochs)
    if args.partner_epochs:
        config["partner_epochs"] = int(args.partner_epochs)
    result = experiment(args.out, seed=args.seed, device=args.device, **config)
    print(f"Experiment written to {args.out}: " + "; ".join(
        f"n={r['n_cases']}: scratch {r['scratch_mean_dice']:.3f}, fine-tuned {r['finetuned_mean_dice']:.3f}, partner {r['partner_mean_dice']:.3f}"
        for r in result["dice"]))
    return 0
