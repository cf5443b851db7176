"""Train an inverse-RG upscaler (ECMK b = 3 or minimal b = 2) on isingcore HDF5 ensembles.

    python tools/train_upscaler.py --family ecmk --data fine_L96.h5 --epochs 20 --out ckpt/ecmk.pt
    python tools/train_upscaler.py --family minimal --kernel-size 3 --data a.h5 b.h5 --weighted \\
        --out ckpt/minimal-k3.pt --loss-png ckpt/minimal-k3.png

Writes a checkpoint (``torch.save`` dict: state dict, hyper-parameters, loss curve, SHA-256 of
the data files, this command line); ``tools/export_onnx.py`` turns it into the ONNX model of
docs/UPSCALING.md. Losses, defaults and the data handling: :mod:`isingcore.rg.train.training`.
"""

import argparse
import os
import shlex
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(_ROOT, "isingcore", "__init__.py")):
    sys.path.insert(0, _ROOT)  # the checkout's isingcore, not an older installed copy


def _c10(text):
    if text in ("critical", "kaufman"):
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'critical', 'kaufman' or a number, got {text!r}") from None


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", choices=("ecmk", "minimal"), required=True)
    ap.add_argument("--kernel-size", type=int, default=None, help="default 9 (ecmk), 3 (minimal: 3, 5 or 7)")
    ap.add_argument("--data", nargs="+", required=True, metavar="FILE.h5",
                    help="isingcore ensemble file(s) of fine configurations, one size and coupling")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=None, help="AdamW learning rate (default 1e-3)")
    ap.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                    help="constant rate, or cosine decay to 0 over the run (per batch)")
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0, help="initial parameters, batches and majority-rule ties")
    ap.add_argument("--gamma", type=float, default=5000.0, help="ECMK: weight of the c10 penalty")
    ap.add_argument("--c10-target", type=_c10, default="critical",
                    help="ECMK: 'critical' (1/sqrt 2), 'kaufman' (exact at the training size) or a number")
    ap.add_argument("--trained-on", choices=("majority", "block_mean"), default="majority",
                    help="coarse inputs: majority-rule spins or block averages (ECMK paper)")
    ap.add_argument("--weighted", action="store_true",
                    help="minimal: weight configurations by 2^-n_ties (seed 003 eq. 13), normalised per batch")
    ap.add_argument("--val-fraction", type=float, default=0.1, help="held-out tail of the data")
    ap.add_argument("--init-from", default=None, metavar="CHECKPOINT.pt",
                    help="start from this checkpoint's parameters (same family and kernel size)")
    ap.add_argument("--out", required=True, metavar="CHECKPOINT.pt")
    ap.add_argument("--loss-png", default=None, metavar="FILE.png", help="plot the loss curve")
    ap.add_argument("--device", default="cpu", help="torch device, e.g. cuda (needs a CUDA build of torch)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from isingcore.rg.train.training import (
        TrainConfig,
        plot_loss_curve,
        save_checkpoint,
        train,
    )

    cfg = TrainConfig(family=args.family, kernel_size=args.kernel_size, epochs=args.epochs,
                      batch_size=args.batch_size, lr=args.lr, lr_schedule=args.lr_schedule,
                      weight_decay=args.weight_decay, seed=args.seed,
                      gamma=args.gamma, c10_target=args.c10_target, trained_on=args.trained_on,
                      weighted=args.weighted, val_fraction=args.val_fraction, init_from=args.init_from,
                      progress=not args.no_progress,
                      device=args.device)
    words = sys.argv if argv is None else [sys.argv[0], *argv]
    command = "python " + shlex.join(words)
    try:
        ckpt = train(args.data, cfg, command=command)
    except (ValueError, FileNotFoundError) as exc:
        sys.exit(f"train_upscaler: {exc}")
    save_checkpoint(ckpt, args.out)
    final = ckpt["final"]
    terms = ", ".join(f"{k}={v:.6g}" for k, v in final["terms"].items())
    print(f"{ckpt['family']} k={ckpt['kernel_size']}: {ckpt['parameters']} free parameters, "
          f"{ckpt['train_count']} + {ckpt['val_count']} configurations of {ckpt['train_size'][0]}x{ckpt['train_size'][1]}; "
          f"final {final['split']} loss {final['loss']:.6g} ({terms})")
    print(f"checkpoint: {args.out}")
    if args.loss_png:
        print(f"loss curve: {plot_loss_curve(ckpt, args.loss_png)}")


if __name__ == "__main__":
    main()
