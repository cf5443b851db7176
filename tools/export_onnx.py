"""Export a trained upscaler checkpoint to the ONNX model of docs/UPSCALING.md (``upscaler-v1``).

    python tools/export_onnx.py CHECKPOINT.pt --name ecmk-b3-k9 --out models_onnx/ecmk-b3-k9.onnx

Builds ``Conv -> DepthToSpace(CRD)`` (opset 17, IR version 10) with the metadata of the contract,
checks it in onnxruntime against the PyTorch model on random +-1 lattices of several sizes
(max abs difference <= 1e-5, else it fails and writes nothing) and writes it.
"""

import argparse
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(_ROOT, "isingcore", "__init__.py")):
    sys.path.insert(0, _ROOT)  # the checkout's isingcore, not an older installed copy


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", metavar="CHECKPOINT.pt")
    ap.add_argument("--name", default=None, help="model name (default <family>-b<scale>-k<kernel>)")
    ap.add_argument("--out", required=True, metavar="MODEL.onnx")
    ap.add_argument("--tol", type=float, default=1e-5, help="largest allowed |onnx - torch| in the check")
    args = ap.parse_args(argv)
    from isingcore.rg.train.export import ExportCheckError, export_onnx

    try:
        info = export_onnx(args.checkpoint, args.out, args.name, tol=args.tol)
    except (ExportCheckError, ValueError, FileNotFoundError) as exc:
        sys.exit(f"export_onnx: {exc}")
    md = info["metadata"]
    print(f"{info['name']}: {md['family']} b={md['scale']} k={md['kernel_size']} halo={md['halo']} "
          f"output={md['output_kind']}{' clamp=' + md['clamp'] if md['clamp'] else ''}; "
          f"onnxruntime vs torch max |diff| = {info['max_abs_diff']:.3g}")
    print(f"written: {info['path']}")


if __name__ == "__main__":
    main()
