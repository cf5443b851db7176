"""Train multilevel samplers (seed 001: RiGCS, or tuned MLMC-HB) sequentially over lattice sizes; export.

    python tools/train_multilevel.py --beta kc --sizes 8 16 32 64 --steps 1000 800 400 200 \\
        --batch 256 --seed 0 --out models_onnx/multilevel --threads 2
    python tools/train_multilevel.py --beta 0.44 --sizes 8 16 32 64 --heatbath-only --steps 300 \\
        --chi2-steps 200 --out models_onnx/multilevel

For each size (coarsest lattice 4x4 throughout) the model is trained by reverse KL (REINFORCE with
a mean baseline, Adam), starting from the previous size's model (model transfer, seed 001 sec. 3.3)
or, for the first size, from MLMC-HB with the Maris-Kadanoff couplings; optionally fine-tuned on
the chi^2 objective (maximal ESS). Each size is exported to ``OUT/<prefix>-<beta tag>-L<size>/``
(ONNX networks, manifest.json, history.json, README.md model card) and its ESS is measured with
the runtime ``MultilevelSampler``. Details: :mod:`isingcore.multilevel.train`.
"""

import argparse
import json
import os
import shlex
import sys
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(_ROOT, "isingcore", "__init__.py")):
    sys.path.insert(0, _ROOT)  # the checkout's isingcore, not an older installed copy


def _beta(text):
    if text.lower() in ("kc", "critical"):
        from isingcore.constants import BETA_C

        return BETA_C
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'kc' or a number, got {text!r}") from None


def _per_size(values, sizes, what):
    if len(values) == 1:
        return list(values) * len(sizes)
    if len(values) != len(sizes):
        sys.exit(f"train_multilevel: --{what} needs one value or one per size ({len(sizes)}), got {len(values)}")
    return list(values)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--remeasure", nargs="+", default=None, metavar="MODEL_DIR",
                    help="only re-measure ESS/KL (model and untrained MLMC-HB) of exported models and rewrite their cards "
                         "(--ess-samples N: on N samples instead of the manifest's number)")
    ap.add_argument("--beta", type=_beta, default=None, help="'kc' (= 0.5 ln(1 + sqrt 2)) or a number")
    ap.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--steps", type=int, nargs="+", default=[500], help="reverse-KL steps (one, or one per size)")
    ap.add_argument("--chi2-steps", type=int, nargs="+", default=[0],
                    help="chi^2 (max-ESS) fine-tuning steps after the KL steps (one, or one per size)")
    ap.add_argument("--batch", type=int, nargs="+", default=[256], help="batch size (one, or one per size)")
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (seed 001 app. G.4: 1e-3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--heatbath-only", action="store_true", help="train only the couplings (tuned MLMC-HB)")
    ap.add_argument("--scheme", choices=("seed001", "split"), default=None,
                    help="level hierarchy (isingcore.multilevel.hierarchy): 'seed001' (default for a fresh model) or "
                         "'split' (sub-lattices conditioned on each other, exact decimated level); with --init-from "
                         "the default is the initial model's scheme, and another scheme converts it")
    ap.add_argument("--out", default=os.path.join("models_onnx", "multilevel"))
    ap.add_argument("--name-prefix", default=None, help="default 'rigcs' (or 'mlmchb' with --heatbath-only)")
    ap.add_argument("--ess-samples", type=int, nargs="+", default=None,
                    help="samples for the final ESS (one, or one per size; default 1e5 for L <= 16, else 1e4)")
    ap.add_argument("--ess-every", type=int, default=25, help="record the batch ESS every N steps")
    ap.add_argument("--checkpoint-dir", default=None,
                    help="also save a torch checkpoint <name>.pt per size here (not in the shipped model directory)")
    ap.add_argument("--init-from", default=None, metavar="CKPT.pt|MODEL_DIR",
                    help="start from a checkpoint or an exported model directory (its stages, history and wall "
                         "time are carried over); the first size "
                         "may equal its size (training continues) or be larger (model transfer)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.beta is None and not args.remeasure:
        ap.error("--beta is required")
    return args


def model_card(path, man, baseline, command):
    tr = man["training"]
    L, beta = man["size"], man["beta"]
    learned = [lv["index"] for lv in man["levels"] if lv["network"]]
    scheme = man.get("scheme", "seed001")
    kind = ("RiGCS-style learned conditionals (seed 001)" if learned else
            "MLMC-HB with trained couplings (heat-bath levels only)")
    if scheme == "split":
        kind += (" on the 'split' hierarchy: every seed-001 level drawn as two sub-lattices, the second "
                 "conditioned on the first, and the finest odd-odd sub-lattice drawn from its exact decimated "
                 "conditional (isingcore.multilevel.hierarchy)")
    lines = [f"# {man['name']}", "",
             f"Multilevel sampler of the 2D Ising model on a {L}x{L} torus at beta = {beta!r}: {kind}.",
             (f"Coarsest level: exact Boltzmann on a {man['coarsest']}x{man['coarsest']} torus with trained "
              f"(K_nn, K_nnn) = ({man['coarsest_couplings'][0]:.6f}, {man['coarsest_couplings'][1]:.6f}); "
              f"last level: exact heat bath at beta."), "",
             "Use it: `MultilevelSampler(model=\"" + man["name"] + "\")` (isingcore.multilevel).", "",
             "## Levels", "", "| level | kind | grid | coupling K | network |", "|---|---|---|---|---|"]
    for lv in man["levels"]:
        what = lv["network"] or ("exact decimation" if lv["kind"] == "decimated" else "heat bath")
        lines.append(f"| {lv['index']} | {lv['kind']} | {lv['grid']} | {lv['coupling']:.6f} | {what} |")
    if learned:
        lines += ["", ("Learned level: log-odds `a = 2 K sum_nb s_nb + W2*(silu(W1x*x + W1m*m + b) - silu(-W1x*x + W1m*m + b))`,"
                       " 5x5 conv to 12 channels then 3x3 conv (receptive field 7x7, halo 3), exactly odd in the spins.")]
    lines += ["", "## Training", "",
              f"Objective: reverse KL(q || p) with the REINFORCE estimator and a mean baseline "
              f"(loss = mean[(f - mean f) ln q], f = ln q - ln p~), Adam lr {tr['lr']}"
              + (", then chi^2 / max-ESS fine-tuning (loss = -mean[w~^2 ln q], self-normalised w~)" if tr.get("chi2_steps_total") else "")
              + ". Sequential training with model transfer (seed 001 sec. 3.3), coarsest lattice fixed at 4x4:", "",
              "| size | objective | steps | batch | wall s | final batch ESS |", "|---|---|---|---|---|---|"]
    for st in tr["stages"]:
        lines.append(f"| {st['size']} | {st['objective']} | {st['steps']} | {st['batch']} | {st['wall_seconds']:.0f} | "
                     f"{st['final_batch_ess']:.4f} |")
    lines += ["", (f"Total training wall time (all stages, shared 2-core CPU, torch {tr['torch']}): "
                   f"{tr['wall_seconds']:.0f} s; seed {tr['seed']}. Loss/ESS history: `history.json`."), "",
              "## Effective sample size", "",
              (f"Measured with the runtime `MultilevelSampler` on {tr['ess_samples']} samples (streams 0.."
               f"{tr['ess_samples'] - 1} of seed {tr['ess_seed']}), against the untrained MLMC-HB (Maris-Kadanoff "
               "couplings) on the same number of samples. KL(q||p) = ln Z - mean ln w uses Kaufman's exact ln Z; "
               "Z_hat/Z is the mode-dropping measure (1 when nothing is missed). At large L the ESS of 10^4 "
               "samples is a noisy, upward-biased estimate (heavy-tailed weights); the KL is the reliable number."), "",
              "| sampler | ESS/N | KL(q\\|\\|p) | ln Z_hat - ln Z | Z_hat/Z |", "|---|---|---|---|---|"]
    for label, d in (("this model", tr), ("MLMC-HB (untrained)", baseline)):
        if d and "kl" in d:
            lines.append(f"| {label} | {d['ess']:.4g} | {d['kl']:.4g} | {d['ln_z'] - d['ln_z_exact']:+.4f} +- "
                         f"{d['ln_z_error']:.2g} | {d['mode_dropping']:.3g} |")
        elif d:
            lines.append(f"| {label} | {d['ess']:.4g} | | | |")
    lines += ["", "## Command", "", f"`{command}`", ""]
    with open(os.path.join(path, "README.md"), "w") as fh:
        fh.write("\n".join(lines))


def _rewrite_manifest(directory, man, training):
    from isingcore.multilevel.models import load_model, write_manifest

    model = load_model(directory)
    write_manifest(directory, name=man["name"], size=man["size"], beta=man["beta"], coarsest=man["coarsest"],
                   coarsest_couplings=man["coarsest_couplings"], couplings=model.couplings,
                   networks={lv["index"]: lv["network"] for lv in man["levels"] if lv["network"]}, training=training,
                   scheme=man.get("scheme", "seed001"))


def add_baseline(directory, n, remeasure=False):
    """Measure the untrained MLMC-HB (and, with ``remeasure``, the model again) on ``n`` samples; update the
    manifest's ``training`` and write the model card. Returns the new ``training`` dict."""
    from isingcore.multilevel.sampler import MultilevelSampler
    from isingcore.multilevel.train import measure_ess, measure_sampler

    with open(os.path.join(directory, "manifest.json")) as fh:
        man = json.load(fh)
    tr = dict(man["training"])
    if remeasure or "kl" not in tr:
        tr.update(measure_ess(directory, n, tr.get("ess_seed", 2026)))
    tr["mlmc_hb"] = measure_sampler(MultilevelSampler(man["size"], man["beta"]), n, tr["ess_seed"])
    _rewrite_manifest(directory, man, tr)
    man["training"] = tr
    model_card(directory, man, tr["mlmc_hb"], tr["command"])
    return tr


def main(argv=None):
    args = parse_args(argv)
    if args.remeasure:
        for d in args.remeasure:
            with open(os.path.join(d, "manifest.json")) as fh:
                n = json.load(fh)["training"].get("ess_samples", 10000)
            n = args.ess_samples[0] if args.ess_samples else n
            tr = add_baseline(d, n, remeasure=True)
            print(f"{d}: ESS/N = {tr['ess']:.4g}, KL = {tr['kl']:.4g}; MLMC-HB ESS/N = {tr['mlmc_hb']['ess']:.4g}, "
                  f"KL = {tr['mlmc_hb']['kl']:.4g}", flush=True)
        return
    import torch

    from isingcore.multilevel.train import (
        MultilevelTorch,
        export_model,
        model_name,
        train_stage,
        transfer,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = args.sizes
    if sorted(sizes) != sizes or len(set(sizes)) != len(sizes):
        sys.exit("train_multilevel: --sizes must increase")
    steps = _per_size(args.steps, sizes, "steps")
    chi2 = _per_size(args.chi2_steps, sizes, "chi2-steps")
    batch = _per_size(args.batch, sizes, "batch")
    ess_n = _per_size(args.ess_samples or [100000 if L <= 16 else 10000 for L in sizes], sizes, "ess-samples")
    prefix = args.name_prefix or ("mlmchb" if args.heatbath_only else "rigcs")
    words = sys.argv if argv is None else [sys.argv[0], *argv]
    command = "python " + shlex.join(words)
    log = (lambda *a: None) if args.quiet else (lambda msg: print(msg, flush=True))
    stages, history, wall = [], [], 0.0
    model = None
    init_tmap = {}
    if args.init_from:
        if os.path.isdir(args.init_from):  # an exported model directory
            model = MultilevelTorch.from_directory(args.init_from)
            with open(os.path.join(args.init_from, "manifest.json")) as fh:
                tr = json.load(fh)["training"]
            with open(os.path.join(args.init_from, "history.json")) as fh:
                hist = json.load(fh)
            ck = {"beta": model.beta, "networks": model.networks, "stages": tr["stages"], "history": hist,
                  "wall_seconds": tr["wall_seconds"], "command": tr["command"]}
            init_tmap = tr.get("transfer_map", {})
        else:
            ck = torch.load(args.init_from, weights_only=False)
            model = MultilevelTorch(ck["size"], ck["beta"], networks=ck["networks"], scheme=ck.get("scheme", "seed001"))
            model.load_state_dict(ck["state"])
        if abs(ck["beta"] - args.beta) > 1e-12 or ck["networks"] == args.heatbath_only:
            sys.exit(f"train_multilevel: {args.init_from} was trained at beta={ck['beta']}, "
                     f"networks={ck['networks']}: does not match this run")
        stages, history, wall = ck["stages"], ck["history"], ck["wall_seconds"]
        command = ck["command"] + " && " + command
        if sizes[0] < model.size:
            sys.exit(f"train_multilevel: --sizes must start at >= {model.size} (the checkpoint's size)")
    scheme = args.scheme or (model.scheme if model is not None else "seed001")
    for i, L in enumerate(sizes):
        torch.manual_seed(args.seed + 1000 * i)
        t0 = time.perf_counter()
        if model is None:
            model = MultilevelTorch(L, args.beta, networks=not args.heatbath_only, scheme=scheme)
            tmap = {}
        elif model.size == L and model.scheme == scheme:  # continue training (a run started from this size)
            tmap = init_tmap
        else:  # model transfer to a larger lattice and/or conversion to another scheme
            model = transfer(model, L, scheme)
            tmap = {str(k): v for k, v in model.transfer_map.items()}
        params = model.coupling_parameters() if args.heatbath_only else None
        name = model_name(prefix, args.beta, L)
        log(f"{name}: {model.hierarchy.n_levels} levels, learned {model.learned}"
            + (f", transferred {tmap}" if tmap else ""))
        for obj, n in (("kl", steps[i]), ("chi2", chi2[i])):
            if n <= 0:
                continue
            st = train_stage(model, steps=n, batch=batch[i], lr=args.lr, objective=obj, seed=args.seed + 17 * i,
                             ess_every=args.ess_every, log=log, params=params)
            hist = st.pop("history")
            st["final_batch_ess"] = hist[-1]["ess"]
            stages.append(dict(st))
            history.append({"size": L, "objective": obj, "records": hist})
        wall += time.perf_counter() - t0
        training = {"scheme": model.scheme, "objective": "reverse-kl" + ("+chi2" if any(chi2[:i + 1]) else ""), "mode":
                    "heatbath-only" if args.heatbath_only else "rigcs", "lr": args.lr, "seed": args.seed,
                    "batch": batch[i], "stages": list(stages), "steps_total": sum(s["steps"] for s in stages),
                    "chi2_steps_total": sum(s["steps"] for s in stages if s["objective"] == "chi2"),
                    "wall_seconds": round(wall, 1), "transfer_map": tmap, "torch": torch.__version__,
                    "command": command, "history": "history.json"}
        out = os.path.join(args.out, name)
        if args.checkpoint_dir:
            os.makedirs(args.checkpoint_dir, exist_ok=True)
            torch.save({"size": L, "beta": args.beta, "networks": model.networks, "scheme": model.scheme,
                        "state": model.state_dict(),
                        "stages": stages, "history": history, "wall_seconds": wall, "command": command},
                       os.path.join(args.checkpoint_dir, name + ".pt"))
        log(f"{name}: exporting to {out}, measuring ESS on {ess_n[i]} samples ...")
        training = export_model(model, out, name=name, training=training, ess_samples=ess_n[i],
                                ess_seed=2026, history=history)
        training = add_baseline(out, ess_n[i])
        log(f"{name}: ESS/N = {training['ess']:.4g}, KL = {training['kl']:.4g} (MLMC-HB: ESS/N = "
            f"{training['mlmc_hb']['ess']:.4g}, KL = {training['mlmc_hb']['kl']:.4g}), training wall {wall:.0f} s")


if __name__ == "__main__":
    main()
