"""Write the model card ``models_onnx/NAME.md`` of a shipped upscaler.

    python tools/model_card.py minimal-b2-k3 --checkpoint data/ckpt/minimal-b2-k3.pt \
        --fidelity tools/bench/results/fidelity_minimal-b2-k3.md --dream tools/bench/results/dream_minimal-b2-k3.md

The card holds what a user needs to trust the model: the exported file's metadata, the commands
that made the training data, trained and exported the model, the final losses, the learned
couplings (minimal models), and the fidelity tables measured by tools/upscale_fidelity.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from isingcore.rg.models import load_model  # noqa: E402


def data_provenance(paths: list[str]) -> list[str]:
    from isingcore.io import open_ensemble

    lines = []
    for p in paths:
        if not os.path.exists(p):
            lines.append(f"- `{p}` (not present on this machine)")
            continue
        with open_ensemble(p) as ens:
            a = ens.attrs
            x = a.get("extra") or {}
            lines.append(f"- `{os.path.relpath(p, ROOT)}`: {len(ens)} configurations of {a['Lx']}x{a['Ly']} at "
                         f"beta = {a['beta']:.10g}, {a['algorithm']}, {x.get('chains', '?')} chains, stored every "
                         f"{a['spacing']} sweeps; measured tau_int(E) = {x.get('tau_E', float('nan')):.2f}, "
                         f"tau_int(m^2) = {x.get('tau_m2', float('nan')):.2f} sweeps.")
            if x.get("command"):
                lines.append(f"  Made by `{x['command']}` (isingcore {x.get('isingcore_version', '?')}).")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--fidelity", help="markdown table from tools/upscale_fidelity.py (cluster-MC seeds)")
    p.add_argument("--dream", help="markdown table from tools/upscale_fidelity.py --seed-size 1 (minimal models)")
    p.add_argument("--notes", default="", help="extra paragraph (findings, limitations)")
    a = p.parse_args(argv)

    import torch

    ck = torch.load(a.checkpoint, map_location="cpu", weights_only=False)
    m = load_model(a.name)
    md = m.metadata
    cfg = ck.get("config", {})
    final = ck["loss_curve"][-1]
    out = [f"# {a.name}", ""]
    if m.family == "ecmk":
        out += ["Energy-constrained mapping kernel (ECMK, seed 000): a 9x9 convolution from the coarse lattice to "
                f"9 sub-pixel channels, PixelShuffle x3, then clamp(w1 x, -A, A) read as the conditional mean spin "
                f"(A = {float(md['clamp']):.6f}); each fine spin is then drawn with P(s = +1) = (1 + m)/2. "
                "Exactly D4-equivariant (kernel entries tied over the orbits of the square's symmetry group acting "
                "on sub-pixel offset and coarse displacement together), Z2-odd (no bias), circular padding.", ""]
    else:
        out += [f"Minimal symmetric upscaler (seed 003): nearest-neighbour x2 upsampling, one D4-symmetric "
                f"{m.kernel_size}x{m.kernel_size} convolution ({md['parameters']} free parameters), no bias, circular; "
                "logits h with p(s) = e^(s h) / (2 cosh h).", ""]
        params = ck["state_dict"].get("params")
        if params is not None:
            out += [f"Learned couplings (one per D4 orbit of kernel offsets): "
                    + ", ".join(f"{float(v):+.5f}" for v in params), ""]
    out += ["| key | value |", "|---|---|"]
    for k in ("family", "scale", "halo", "kernel_size", "output_kind", "clamp", "trained_on", "beta", "train_size",
              "train_count", "parameters", "loss", "data_sha256", "date", "isingcore_version"):
        out.append(f"| {k} | `{md.get(k, '')}` |")
    out += ["", "## Training data", ""] + data_provenance(ck.get("sources", []))
    out += ["", "## Training", ""]
    init = ck.get("init_from")
    if init:
        out += [f"Started from the parameters of `{init['path']}` (SHA-256 `{init['sha256'][:16]}...`), trained by "
                f"`{init.get('command') or '?'}` (final loss {json.dumps(init.get('final'))}).", ""]
    out += [f"Command: `{ck.get('command', '?')}`", "",
            f"Hyper-parameters: {json.dumps(cfg)}", "",
            f"Final loss after {final['epoch']} epochs: training {json.dumps(final['train'])}, "
            f"validation {json.dumps(final.get('val'))}.", "",
            "Loss per epoch (validation total): "
            + ", ".join(f"{e['val']['total']:.6g}" for e in ck["loss_curve"] if e.get("val")), "",
            "## Export", "",
            f"`python tools/export_onnx.py {os.path.relpath(a.checkpoint, ROOT)} --name {a.name} "
            f"--out models_onnx/{a.name}.onnx` (onnxruntime checked against PyTorch to 1e-5 on random inputs).", ""]
    if a.fidelity:
        out += ["## Fidelity (upscaled from independent Wolff seeds, against Kaufman and cluster MC)", "",
                open(a.fidelity).read().strip(), ""]
    if a.dream:
        out += ["## Dreamed from a single spin (seed 003's protocol, no refinement)", "",
                open(a.dream).read().strip(), ""]
    if a.notes:
        out += ["## Notes", "", a.notes, ""]
    path = os.path.join(ROOT, "models_onnx", f"{a.name}.md")
    with open(path, "w") as f:
        f.write("\n".join(out))
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
