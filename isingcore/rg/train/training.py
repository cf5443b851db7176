"""Training the upscalers of :mod:`isingcore.rg.train.models` on isingcore HDF5 ensembles.

Data
----
Fine configurations come from one or more ``isingcore-ensemble`` files (:mod:`isingcore.io`) of
one lattice size and one coupling, or from an int8 array. All of them are read into memory
(int8, one byte per spin). The coarse inputs are built once, before training:

- ``trained_on="majority"``: majority-rule block spins (:func:`isingcore.rg.coarse.majority_rule`);
  for b = 2, tied blocks are broken by the counter-based generator with key ``(seed, stream=n)``,
  ``n`` = the configuration's index in the concatenated data (files in the order given), step 0
  -- the same training seed and file order give the same coarse configurations;
- ``trained_on="block_mean"``: block averages (:func:`isingcore.rg.coarse.block_mean`), what the
  ECMK paper trained on (ECMK only).

The last ``ceil(val_fraction * n)`` configurations (in file order) are held out for validation:
consecutive configurations of a Markov chain are correlated, and a tail is less correlated with
the training part than a random subset would be.

Losses
------
ECMK (seed 000 eqs. 3-5): ``L = MSE(m, s) + gamma * (c10(m) - c10*)^2`` with ``m`` the clamped
field, ``s`` the true fine spins, and ``c10(m)`` the mean over the batch, over all sites and over
both lattice directions of ``m_i m_{i+delta}`` (periodic). Because the sampler draws the fine
spins independently given the coarse ones, ``c10(m)`` is exactly the expected nearest-neighbour
correlation of the sampled (unrefined) fine configurations. ``c10*`` is ``1/sqrt 2`` (the
infinite lattice at K_c, ``c10_target="critical"``, default), Kaufman's exact finite-torus value
at the training size and coupling (``"kaufman"``), or a number.

Minimal (seed 003 eqs. 9-13): the negative log-likelihood per site, ``-log p(s_i | mu) =
softplus(-2 s_i h_i)``, averaged over the sites of each configuration and then over the batch.
With ``weighted=True`` configuration ``a`` gets the weight ``w_a = D(mu_a | sigma_a) =
2^(-n_ties)`` of eq. (13), **normalised within each batch** (``w_a / sum_batch w``, computed as
a softmax of the log weights): the batch loss is the self-normalised estimate of
``E_P[D log U] / E_P[D]``, which has the minimiser of eq. (13) (the factor ``1/E_P[D]`` is a
constant) and does not underflow for large lattices. The validation loss normalises over the
whole validation set. The unweighted loss (``w_a = 1``) is always recorded as ``nll_uniform``.

Optimisation: AdamW, deterministic batches (a ``torch.Generator`` seeded with ``seed`` draws
the initial parameters and each epoch's permutation; ``torch.manual_seed(seed)`` is also called).
Default learning rate 1e-3 for both families: seed 003 (section III.B) uses it for the minimal
model; the ECMK paper gives none. In a smoke test (128 Wolff configurations of 24^2, batch 16,
40 epochs, gamma = 5000) 3e-3 overshot c10 (0.81 after 5 epochs) and drifted to a larger MSE,
3e-4 converged more slowly, 1e-3 was in between; with gamma = 5000 the batch-to-batch noise of
c10 dominates the late loss whatever the rate, so use large batches for the ECMK, and
``lr_schedule="cosine"`` (the rate falls as lr (1 + cos(pi t/T))/2 over the T batches of the run,
Loshchilov and Hutter, arXiv:1608.03983) to let the stiff penalty settle at the end. Weight decay
defaults to 0: the models are tiny and a decay would bias the maximum-likelihood couplings.
No data augmentation: the models are exactly D4 and Z2 symmetric.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ...constants import BETA_C, NN_CORRELATION_C
from .models import build_model

__all__ = [
    "CHECKPOINT_FORMAT",
    "TrainConfig",
    "TrainingData",
    "c10_target_value",
    "coarse_inputs",
    "ecmk_loss",
    "file_sha256",
    "load_checkpoint",
    "load_ensembles",
    "model_from_checkpoint",
    "nll_per_configuration",
    "plot_loss_curve",
    "save_checkpoint",
    "train",
]

CHECKPOINT_FORMAT = "isingcore-upscaler-checkpoint-v1"
DEFAULT_LR = {"ecmk": 1e-3, "minimal": 1e-3}


@dataclasses.dataclass
class TrainConfig:
    """Hyper-parameters of :func:`train` (all stored in the checkpoint)."""

    family: str = "ecmk"  #: "ecmk" (b = 3) or "minimal" (b = 2)
    kernel_size: int | None = None  #: default 9 (ecmk), 3 (minimal)
    epochs: int = 10
    batch_size: int = 64
    lr: float | None = None  #: default :data:`DEFAULT_LR` of the family
    lr_schedule: str = "constant"  #: "constant", or "cosine": lr (1 + cos(pi t / T)) / 2 over the T batches
    weight_decay: float = 0.0
    seed: int = 0
    gamma: float = 5000.0  #: ECMK weight of the c10 penalty
    c10_target: float | str = "critical"  #: "critical" (1/sqrt 2), "kaufman" or a number
    trained_on: str = "majority"  #: "majority" or "block_mean" (ECMK only)
    weighted: bool = False  #: minimal: tie weights 2^(-n_ties), normalised per batch
    val_fraction: float = 0.1
    init_from: str | None = None  #: start from this checkpoint's parameters (same family and kernel size)
    progress: bool = True  #: tqdm progress bar
    device: str = "cpu"  #: torch device of the model and the batches (the data stays on the host)

    def resolved(self) -> TrainConfig:
        """A copy with defaults filled in and every field checked (``ValueError`` names the field)."""
        c = dataclasses.replace(self)
        if c.family not in ("ecmk", "minimal"):
            raise ValueError(f"family must be 'ecmk' or 'minimal', got {c.family!r}")
        if c.kernel_size is None:
            c.kernel_size = 9 if c.family == "ecmk" else 3
        if isinstance(c.kernel_size, bool) or not isinstance(c.kernel_size, int) or c.kernel_size < 1 \
                or c.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be an odd positive integer, got {c.kernel_size!r}")
        if c.lr is None:
            c.lr = DEFAULT_LR[c.family]
        for name in ("epochs", "batch_size"):
            v = getattr(c, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "epochs" else 1):
                raise ValueError(f"{name} must be a {'non-negative' if name == 'epochs' else 'positive'} integer, "
                                 f"got {v!r}")
        for name in ("lr", "weight_decay", "gamma"):
            v = float(getattr(c, name))
            if not math.isfinite(v) or v < 0 or (name == "lr" and v == 0):
                raise ValueError(f"{name} must be a finite number {'> 0' if name == 'lr' else '>= 0'}, got {v!r}")
            setattr(c, name, v)
        if isinstance(c.seed, bool) or not isinstance(c.seed, int) or not 0 <= c.seed < 2**32:
            raise ValueError(f"seed must be an integer in [0, 2**32), got {c.seed!r}")
        if c.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {c.lr_schedule!r}")
        if c.trained_on not in ("majority", "block_mean"):
            raise ValueError(f"trained_on must be 'majority' or 'block_mean', got {c.trained_on!r}")
        if c.family == "minimal" and c.trained_on != "majority":
            raise ValueError("trained_on='block_mean' is for the ECMK only; the minimal model learns p(sigma | mu) "
                             "for majority-rule block spins")
        if c.weighted and c.family != "minimal":
            raise ValueError("weighted=True applies to the minimal (b = 2) model only: b = 3 majority blocks have no ties")
        if not isinstance(c.c10_target, str):
            c.c10_target = float(c.c10_target)
        elif c.c10_target not in ("critical", "kaufman"):
            raise ValueError(f"c10_target must be 'critical', 'kaufman' or a number, got {c.c10_target!r}")
        if c.init_from is not None:
            c.init_from = os.fspath(c.init_from)
        if not 0.0 <= float(c.val_fraction) < 1.0:
            raise ValueError(f"val_fraction must lie in [0, 1), got {c.val_fraction!r}")
        c.val_fraction = float(c.val_fraction)
        return c


@dataclasses.dataclass
class TrainingData:
    """Fine configurations (int8 ``(n, Lx, Ly)``, +-1) with their provenance."""

    spins: np.ndarray
    beta: float
    sources: list[str]  #: file paths, or ["<array>"]
    sha256: list[str]  #: SHA-256 of each file (of the array's bytes for an array)

    @property
    def data_sha256(self) -> str:
        """The metadata string: the one hash, or the hashes of several files joined by commas."""
        return ",".join(self.sha256)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_ensembles(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> TrainingData:
    """Read every configuration of one or more ensemble files (same ``Lx``, ``Ly`` and ``beta``)."""
    from ...io import open_ensemble

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("paths: give at least one ensemble file")
    arrays, beta, shape = [], None, None
    for p in paths:
        with open_ensemble(p) as ens:
            b, s = float(ens.attrs["beta"]), (ens.Lx, ens.Ly)
            if beta is None:
                beta, shape = b, s
            elif abs(b - beta) > 1e-12 * max(1.0, abs(beta)) or s != shape:
                raise ValueError(f"{p}: beta={b!r}, lattice {s[0]}x{s[1]} differ from the first file's "
                                 f"beta={beta!r}, {shape[0]}x{shape[1]}; train on one size and coupling")
            if len(ens) == 0:
                raise ValueError(f"{p}: the ensemble holds no configurations")
            arrays.append(np.asarray(ens[:], dtype=np.int8))
    return TrainingData(np.concatenate(arrays), beta, paths, [file_sha256(p) for p in paths])


def _as_data(data, beta) -> TrainingData:
    if isinstance(data, TrainingData):
        return data
    if isinstance(data, np.ndarray) or torch.is_tensor(data):
        a = np.ascontiguousarray(np.asarray(data), dtype=np.int8)
        if a.ndim != 3 or not np.all((a == 1) | (a == -1)):
            raise ValueError(f"data: an array must be int8 +-1 of shape (n, Lx, Ly); got shape {a.shape}")
        return TrainingData(a, BETA_C if beta is None else float(beta), ["<array>"],
                            [hashlib.sha256(a.tobytes()).hexdigest()])
    out = load_ensembles(data)
    if beta is not None and abs(float(beta) - out.beta) > 1e-12:
        raise ValueError(f"beta={beta!r} differs from the files' beta={out.beta!r}")
    return out


def coarse_inputs(spins: np.ndarray, scale: int, trained_on: str = "majority", *, seed: int = 0,
                  first_stream: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Coarse inputs ``float32 (n, 1, Lx/b, Ly/b)`` and log tie weights ``float64 (n,)`` of fine spins.

    ``majority``: :func:`isingcore.rg.coarse.majority_rule` with ``(seed, streams = first_stream +
    arange(n), step 0)``; ``block_mean``: :func:`isingcore.rg.coarse.block_mean` (log weights 0).
    """
    from .. import coarse

    spins = np.asarray(spins)
    n = spins.shape[0]
    if trained_on == "majority":
        streams = np.arange(first_stream, first_stream + n, dtype=np.uint32)
        mu = coarse.majority_rule(spins, scale, seed=seed, streams=streams, step=0)
        logw = coarse.log_tie_weight(spins, scale) if scale % 2 == 0 else np.zeros(n)
    elif trained_on == "block_mean":
        mu = coarse.block_mean(spins, scale)
        logw = np.zeros(n)
    else:
        raise ValueError(f"trained_on must be 'majority' or 'block_mean', got {trained_on!r}")
    return np.asarray(mu, dtype=np.float32)[:, None], np.asarray(logw, dtype=np.float64)


def c10_target_value(target: float | str, beta: float, Lx: int, Ly: int) -> float:
    """``c10*``: 1/sqrt 2 (``"critical"``), Kaufman's ``-u/2`` on the ``Lx x Ly`` torus (``"kaufman"``), or the number."""
    if target == "critical":
        return NN_CORRELATION_C
    if target == "kaufman":
        from ...exact import kaufman_torus

        return -float(kaufman_torus(beta, Lx, Ly).energy) / 2.0
    return float(target)


def _c10(m: torch.Tensor) -> torch.Tensor:
    """Mean of m_i m_{i+delta} over batch, sites and both directions (periodic)."""
    return 0.5 * ((m * torch.roll(m, 1, -1)).mean() + (m * torch.roll(m, 1, -2)).mean())


def ecmk_loss(mean: torch.Tensor, fine: torch.Tensor, gamma: float, c10_star: float):
    """``(total, {"mse", "phys", "c10"})``: ``mse + gamma * (c10(mean) - c10*)^2`` (seed 000 eqs. 4, 5)."""
    mse = F.mse_loss(mean, fine)
    c10 = _c10(mean)
    phys = (c10 - c10_star) ** 2
    return mse + gamma * phys, {"mse": mse, "phys": phys, "c10": c10}


def nll_per_configuration(h: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
    """``-(1/N) sum_i log p(s_i | mu)``, ``p = e^{s h} / 2cosh h``, per configuration ``(n,)``."""
    return F.softplus(-2.0 * fine * h).flatten(1).mean(1)


def _minimal_loss(h, fine, logw, weighted: bool):
    nll = nll_per_configuration(h, fine)
    uniform = nll.mean()
    if weighted:
        w = torch.softmax(logw, 0).to(nll.dtype)  # w_a / sum_batch w, from log D = -n_ties ln 2
        total = (w * nll).sum()
    else:
        total = uniform
    return total, {"nll": total, "nll_uniform": uniform}


class _Trainer:
    def __init__(self, model, cfg: TrainConfig, c10_star: float):
        self.model, self.cfg, self.c10_star = model, cfg, c10_star
        self.device = next(model.parameters()).device

    def batch_loss(self, mu, fine, logw):
        if self.cfg.family == "ecmk":
            return ecmk_loss(self.model(mu), fine, self.cfg.gamma, self.c10_star)
        return _minimal_loss(self.model(mu), fine, logw, self.cfg.weighted)

    @torch.no_grad()
    def evaluate(self, mu_all, fine_all, logw_all, chunk: int = 256) -> dict:
        """Loss over a whole set (c10 and weights over the set, not per chunk)."""
        n = mu_all.shape[0]
        if n == 0:
            return {}
        if self.cfg.family == "ecmk":
            se = c10 = 0.0
            for a in range(0, n, chunk):
                m = self.model(mu_all[a:a + chunk].to(self.device))
                f = fine_all[a:a + chunk].to(self.device, m.dtype)
                k = m.shape[0] / n
                se += float(((m - f) ** 2).mean()) * k
                c10 += float(_c10(m)) * k
            phys = (c10 - self.c10_star) ** 2
            return {"total": se + self.cfg.gamma * phys, "mse": se, "phys": phys, "c10": c10}
        nll = torch.cat([nll_per_configuration(self.model(mu_all[a:a + chunk].to(self.device)),
                                               fine_all[a:a + chunk].to(self.device, torch.float32)).cpu()
                         for a in range(0, n, chunk)]).double()
        uniform = float(nll.mean())
        total = float((torch.softmax(logw_all, 0) * nll).sum()) if self.cfg.weighted else uniform
        return {"total": total, "nll": total, "nll_uniform": uniform}


def train(data, config: TrainConfig | None = None, *, beta: float | None = None, command: str | None = None,
          **overrides) -> dict:
    """Train an upscaler; return the checkpoint dict (see :func:`save_checkpoint`).

    ``data``: an ensemble path, a list of paths, a :class:`TrainingData`, or an int8 ``(n, Lx, Ly)``
    array of +-1 (then ``beta`` defaults to K_c). ``config`` (a :class:`TrainConfig`) and/or keyword
    overrides of its fields (``train(path, family="minimal", epochs=5)``). ``command`` is recorded as
    the training command (default: a description of this call).

    The checkpoint holds ``state_dict``, the resolved ``config``, ``family``, ``scale``,
    ``kernel_size``, ``halo``, ``output_kind``, ``parameters`` (free parameters), ``beta``,
    ``train_size`` ``[Lx, Ly]``, ``train_count``/``val_count``, ``sources``, ``data_sha256`` (list),
    ``c10_target``, ``loss_curve`` (one entry per epoch, epoch 0 = before training: ``{"epoch",
    "train": {"total", parts...}, "val": {...}}``; the training entries of epochs >= 1 are averages
    of the batch losses during the epoch, the validation entries are evaluated after it),
    ``final`` (``{"split", "loss", "terms"}``: the last validation loss, or the last training loss
    if nothing is held out), ``init_from`` (None, or the starting checkpoint's path, SHA-256,
    command and final loss), ``clamp`` (ECMK), ``command``, ``date``, ``isingcore_version``,
    ``torch_version``.
    """
    from tqdm.auto import tqdm

    import isingcore

    cfg = dataclasses.replace(config or TrainConfig(), **overrides).resolved()
    d = _as_data(data, beta)
    spins = d.spins
    n, Lx, Ly = spins.shape
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = build_model(cfg.family, cfg.kernel_size, generator=gen)
    init = None
    if cfg.init_from is not None:
        init = load_checkpoint(cfg.init_from)
        if (init["family"], init["kernel_size"]) != (cfg.family, cfg.kernel_size):
            raise ValueError(f"init_from={cfg.init_from!r} holds a {init['family']} k={init['kernel_size']} model, "
                             f"not {cfg.family} k={cfg.kernel_size}")
        model.load_state_dict(init["state_dict"])
    dev = torch.device(cfg.device)
    model.to(dev)
    b = model.scale
    if Lx % b or Ly % b:
        raise ValueError(f"the training lattice {Lx}x{Ly} is not divisible by the block size b={b}")
    if (Lx // b) < model.halo or (Ly // b) < model.halo:
        raise ValueError(f"the coarse lattice {Lx // b}x{Ly // b} is smaller than the kernel's halo {model.halo}")
    mu_np, logw_np = coarse_inputs(spins, b, cfg.trained_on, seed=cfg.seed)
    mu = torch.from_numpy(mu_np)
    logw = torch.from_numpy(logw_np)
    fine = torch.from_numpy(spins)[:, None]  # int8, converted per batch
    n_val = math.ceil(cfg.val_fraction * n) if cfg.val_fraction > 0 else 0
    n_train = n - n_val
    if n_train < 1:
        raise ValueError(f"{n} configurations leave none for training with val_fraction={cfg.val_fraction}")
    c10_star = c10_target_value(cfg.c10_target, d.beta, Lx, Ly)
    trainer = _Trainer(model, cfg, c10_star)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_batches = math.ceil(n_train / cfg.batch_size)
    sched = None
    if cfg.lr_schedule == "cosine":  # stepped once per batch: the last batch runs at a rate near 0
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs * n_batches))

    tr = (mu[:n_train], fine[:n_train], logw[:n_train])
    va = (mu[n_train:], fine[n_train:], logw[n_train:])
    curve = [{"epoch": 0, "train": trainer.evaluate(*tr), "val": trainer.evaluate(*va)}]
    bar = tqdm(total=cfg.epochs * n_batches, disable=not cfg.progress, unit="batch",
               desc=f"{cfg.family}-k{cfg.kernel_size}")
    try:
        for epoch in range(1, cfg.epochs + 1):
            perm = torch.randperm(n_train, generator=gen)
            sums: dict[str, float] = {}
            for i in range(n_batches):
                idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]
                total, parts = trainer.batch_loss(tr[0][idx].to(dev), tr[1][idx].to(dev, torch.float32),
                                                  tr[2][idx].to(dev))
                opt.zero_grad(set_to_none=True)
                total.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                k = idx.numel() / n_train
                for key, v in {"total": total, **parts}.items():
                    sums[key] = sums.get(key, 0.0) + float(v.detach()) * k
                bar.update(1)
            entry = {"epoch": epoch, "train": sums, "val": trainer.evaluate(*va), "lr": opt.param_groups[0]["lr"]}
            curve.append(entry)
            post = {"loss": f"{sums['total']:.5g}"}
            if entry["val"]:
                post["val"] = f"{entry['val']['total']:.5g}"
            bar.set_postfix(post)
    finally:
        bar.close()

    last = curve[-1]
    split = "val" if last["val"] else "train"
    final_terms = dict(last[split])
    final_loss = final_terms.pop("total")
    if cfg.family == "ecmk":
        final_terms["gamma"] = cfg.gamma
        final_terms["c10_target"] = c10_star
    ckpt: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "family": cfg.family,
        "scale": b,
        "kernel_size": cfg.kernel_size,
        "halo": model.halo,
        "output_kind": model.output_kind,
        "parameters": model.num_free_parameters(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "config": dataclasses.asdict(cfg),
        "beta": d.beta,
        "train_size": [Lx, Ly],
        "train_count": n_train,
        "val_count": n_val,
        "sources": list(d.sources),
        "data_sha256": list(d.sha256),
        "c10_target": c10_star,
        "loss_curve": curve,
        "final": {"split": "validation" if split == "val" else "train", "loss": final_loss, "terms": final_terms},
        "init_from": None if init is None else {"path": cfg.init_from, "sha256": file_sha256(cfg.init_from),
                                                "command": init.get("command"), "final": init.get("final")},
        "command": command if command is not None else f"isingcore.rg.train.train(config={cfg!r})",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "isingcore_version": isingcore.__version__,
        "torch_version": str(torch.__version__),
    }
    if cfg.family == "ecmk":
        ckpt["clamp"] = float(model.clamp.detach())
        ckpt["w1"] = float(model.w1.detach())
    return ckpt


def save_checkpoint(ckpt: dict, path: str | os.PathLike) -> str:
    """Write a checkpoint dict with ``torch.save``; returns the path."""
    path = os.fspath(path)
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    torch.save(ckpt, path)
    return path


def load_checkpoint(path_or_ckpt) -> dict:
    """Read a checkpoint (``torch.load(..., weights_only=True)``); a dict is returned as it is."""
    if isinstance(path_or_ckpt, dict):
        ckpt = path_or_ckpt
    else:
        ckpt = torch.load(os.fspath(path_or_ckpt), map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path_or_ckpt!r}: not an isingcore upscaler checkpoint ({CHECKPOINT_FORMAT})")
    return ckpt


def model_from_checkpoint(ckpt) -> torch.nn.Module:
    """Rebuild the trained model (eval mode) from a checkpoint dict or path."""
    ckpt = load_checkpoint(ckpt)
    model = build_model(ckpt["family"], ckpt["kernel_size"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def plot_loss_curve(ckpt, path: str | os.PathLike) -> str:
    """PNG of the loss curve (total and parts, training and validation, per epoch)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ckpt = load_checkpoint(ckpt)
    curve = ckpt["loss_curve"]
    keys = [k for k in curve[0]["train"] if k != "c10"]
    extra = ["c10"] if "c10" in curve[0]["train"] else []
    fig, axes = plt.subplots(1, len(keys) + len(extra), figsize=(4 * (len(keys) + len(extra)), 3.2), squeeze=False)
    ep = [e["epoch"] for e in curve]
    for ax, key in zip(axes[0], keys + extra):
        for split, style in (("train", "-"), ("val", "--")):
            ys = [e[split].get(key, np.nan) if e[split] else np.nan for e in curve]
            if not all(np.isnan(ys)):
                ax.plot(ep, ys, style, marker=".", label=split)
        if key == "c10":
            ax.axhline(ckpt["c10_target"], color="k", lw=0.8, label="target")
        elif all(e["train"].get(key, 0) > 0 for e in curve):
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    fig.suptitle(f"{ckpt['family']} k={ckpt['kernel_size']}  L={ckpt['train_size'][0]}  n={ckpt['train_count']}")
    fig.tight_layout()
    path = os.fspath(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
