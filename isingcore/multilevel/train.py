"""Training multilevel samplers (seed 001 "RiGCS" and tuned MLMC-HB) with PyTorch; ONNX export.

The runtime (:mod:`.sampler`) never imports this module; it reads what :func:`export_model` writes.

Model (seed 001 eq. 10, sec. 3.1, app. G.3). On the :class:`~.hierarchy.Hierarchy` of an
``L x L`` torus with a fixed ``c x c`` coarsest lattice (c = 4)::

    q(s) = p_beta(s^last | s^{<last}) * prod_{l=1}^{last-1} q_l(s^l | s^{<l}) * q_0(s^0)

* level 0: ``q_0(s) = exp(K_nn E_nn(s) + K_nnn E_nnn(s)) / Z_0`` (:mod:`.coarsest`) with learnable
  ``(K_nn, K_nnn)``; ``ln Z_0`` by a logsumexp over all ``2**16`` states, exact sampling by
  ``torch.multinomial`` over them;
* level ``1 <= l < last``: the sites are independent given the coarser levels (their neighbours in
  the lattice they complete are all coarser), each with log-odds

      a_v = 2 K_l sum_{nb} s_nb + [g_l(x, m) - g_l(-x, m)]_v,
      g_l = Conv(1 -> 12, 5x5 on x) + Conv(1 -> 12, 5x5 on m) -> SiLU -> Conv(12 -> 1, 3x3),

  on the level's grid (``x``, ``m``: the embedded coarser spins and their mask,
  :meth:`Hierarchy.embed`), periodic. Receptive field 7x7 (seed 001 sec. 4, app. G.3: kernels 5
  and 3, 12 channels); the antisymmetrisation makes ``a`` exactly odd in the spins (Z2). The
  output convolution starts at zero, so an untrained model *is* MLMC-HB with the Maris-Kadanoff
  couplings ``K_l`` (:meth:`Hierarchy.coupling_schedule`, seed 001 eq. 37), which are learnable.
  ``q_l(s^l | s^{<l}) = prod_v sigma(s_v a_v)``. (Seed 001 samples the two levels of a block with
  one CNN on the embedded configuration; here each level has its own CNN, same architecture.)
* last level: the exact heat bath at beta, ``a_v = 2 beta sum_nb s_nb`` (no parameters).

``ln q`` is accumulated in float64; the networks run in float32, the heat-bath terms in float64.
Target ``ln p~(s) = beta sum_<ij> s_i s_j`` (``J = 1``).

Training (seed 001 sec. 3.3 eq. 11, app. G.4): reverse KL with the REINFORCE estimator and a mean
baseline (control variate, Mnih & Gregor 2014; Wu et al. 2019),

    f(s) = ln q(s) - ln p~(s),   loss = mean_batch[(f - mean_batch f).detach() * ln q(s)],

whose gradient is the unbiased estimate of ``grad KL(q||p)``; Adam, lr 1e-3. Optionally
afterwards the chi^2 objective ``E_q[w^2]`` (``w = p~/q``), i.e. maximal ESS
``= E_q[w]^2 / E_q[w^2]``: ``grad E_q[w^2] = -E_q[w^2 grad ln q]``, estimated with the
self-normalised weights ``w~ = w / mean_batch w``: ``loss = -mean_batch[w~^2.detach() * ln q]``.

Sequential training with model transfer (seed 001 sec. 3.3, app. E.1, Fig. 2): the coarsest
lattice stays ``c x c`` while ``L`` doubles (two more levels); :func:`transfer` initialises the new
model: level ``k`` (counted from the coarsest) gets level ``k`` of the old model, the new finest
learned (diagonal) level gets the old finest learned diagonal level, the axial level just above it
the old finest learned axial level (kept at its zero / Maris-Kadanoff initialisation if the old
model had none).

"Heat-bath only" (``networks=False``): only the couplings ``K_l`` and ``(K_nn, K_nnn)`` are
trained: a tuned MLMC-HB.
"""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from .coarsest import features, state_spins
from .hierarchy import Hierarchy

__all__ = [
    "HALO",
    "HIDDEN",
    "ConditionalNet",
    "MultilevelTorch",
    "OnnxCheckError",
    "TrainStage",
    "beta_tag",
    "build_onnx_level",
    "check_onnx_level",
    "export_model",
    "measure_ess",
    "model_name",
    "train_stage",
    "transfer",
]

HALO = 3  # receptive field 7x7 = 5x5 then 3x3
HIDDEN = 12
OPSET = 17
IR_VERSION = 10


class OnnxCheckError(RuntimeError):
    """onnxruntime and torch disagree on an exported network."""


def _stencil(kind: str) -> np.ndarray:
    """3x3 nearest-neighbour stencil of a level on its grid: diagonal (corners) or axial (cross)."""
    k = np.zeros((3, 3))
    if kind.startswith("diagonal"):
        k[0, 0] = k[0, 2] = k[2, 0] = k[2, 2] = 1.0
    else:
        k[0, 1] = k[2, 1] = k[1, 0] = k[1, 2] = 1.0
    return k


class ConditionalNet(torch.nn.Module):
    """The odd part ``g(x, m) - g(-x, m)`` of a level's conditional, on a periodically padded input.

    ``forward(padded)``: ``(B, 2, n + 6, n + 6)`` -> ``(B, 1, n, n)`` with valid convolutions. With
    ``u = W1x * x`` and ``v = W1m * m + b1`` the two branches are ``v + u`` and ``v - u``, so
    ``g(x) - g(-x) = W2 * (silu(v + u) - silu(v - u))`` (the output bias cancels and is omitted).
    """

    def __init__(self, hidden: int = HIDDEN):
        super().__init__()
        self.conv_x = torch.nn.Conv2d(1, hidden, 5, bias=False)
        self.conv_m = torch.nn.Conv2d(1, hidden, 5, bias=True)
        self.conv_out = torch.nn.Conv2d(hidden, 1, 3, bias=False)
        torch.nn.init.zeros_(self.conv_out.weight)

    def hidden(self, padded, v=None):
        """``silu(v + u) - silu(v - u)``: ``(B, hidden, n + 2, n + 2)``."""
        u = self.conv_x(padded[:, 0:1])
        if v is None:
            v = self.conv_m(padded[:, 1:2])
        return F.silu(v + u) - F.silu(v - u)

    def forward(self, padded, v=None):
        return self.conv_out(self.hidden(padded, v))

    def at_phases(self, padded, phases, v=None):
        """The output only at the grid sites of the given parities ``(px, py)`` (stride-2 output
        convolutions): ``(B, len(phases) * (n/2)**2)``, phase after phase, each row-major."""
        hid = self.hidden(padded, v)
        B = hid.shape[0]
        return torch.cat([F.conv2d(hid[:, :, px:, py:], self.conv_out.weight, stride=2).reshape(B, -1)
                          for px, py in phases], 1)


class MultilevelTorch(torch.nn.Module):
    """Differentiable multilevel sampler (see the module docstring) of an ``size x size`` torus at ``beta``."""

    def __init__(self, size: int, beta: float, *, coarsest: int = 4, networks: bool = True, hidden: int = HIDDEN,
                 scheme: str = "seed001"):
        super().__init__()
        self.hierarchy = H = Hierarchy(size, coarsest, scheme)
        self.size, self.beta, self.coarsest, self.networks = H.size, float(beta), H.coarsest, bool(networks)
        self.hidden, self.scheme = hidden, H.scheme
        K = H.coupling_schedule(beta)
        self.coarsest_K = torch.nn.Parameter(torch.tensor([K[0], 0.0], dtype=torch.float64))
        self.last = H.n_levels - 1
        self.exact = [lv.index for lv in H.levels[1:] if lv.kind == "decimated"] + [self.last]
        self.learned = [l for l in range(1, self.last) if l not in self.exact]
        self.K = torch.nn.ParameterDict({str(l): torch.nn.Parameter(torch.tensor(float(K[l]), dtype=torch.float64))
                                         for l in self.learned})
        self.nets = torch.nn.ModuleDict({str(l): ConditionalNet(hidden) for l in self.learned} if networks else {})
        c = H.coarsest
        self.register_buffer("states", torch.from_numpy(state_spins(c).reshape(-1, c * c).astype(np.float32)),
                             persistent=False)
        self.register_buffer("state_features", torch.from_numpy(features(state_spins(c))), persistent=False)
        self._idx = {}
        for lv in H.levels:
            d = {"sites": torch.from_numpy(lv.sites)}
            if lv.kind == "decimated":
                from .sampler import decimated_log_odds

                d["second"] = torch.from_numpy(lv.second_neighbours.reshape(-1))
                d["f"] = torch.from_numpy(decimated_log_odds(beta))
            if lv.index > 0:
                d["nb"] = torch.from_numpy(lv.neighbours.reshape(-1))
                gx, gy = lv.grid_xy[:, 0], lv.grid_xy[:, 1]
                phases = sorted({(int(a), int(b)) for a, b in zip(gx % 2, gy % 2)})
                half = lv.grid_size // 2
                ph = np.array([phases.index((int(a), int(b))) for a, b in zip(gx % 2, gy % 2)])
                d["phases"] = phases
                d["phase_idx"] = torch.from_numpy(ph * half * half + (gx // 2) * half + gy // 2)
                mask = (H.level_of_site[::lv.grid, ::lv.grid] < lv.index).astype(np.float32)
                d["mask"] = torch.from_numpy(mask)
                d["mask_padded"] = torch.from_numpy(np.pad(mask, HALO, mode="wrap"))[None, None]
            self._idx[lv.index] = d
        self._bits = 2 ** torch.arange(c * c - 1, -1, -1, dtype=torch.int64)

    @classmethod
    def from_directory(cls, directory: str) -> MultilevelTorch:
        """The torch model of an exported model directory (couplings from the manifest, network weights
        from the ONNX initialisers; heat-bath levels of a learned model keep a zero network)."""
        import onnx
        from onnx import numpy_helper

        from .models import load_model

        mm = load_model(directory)
        model = cls(mm.size, mm.beta, coarsest=mm.coarsest, networks=bool(mm.networks), scheme=mm.scheme)
        with torch.no_grad():
            model.coarsest_K.copy_(torch.tensor(mm.coarsest_couplings, dtype=torch.float64))
            for l in model.learned:
                model.K[str(l)].fill_(float(mm.couplings[l]))
            for l, net in mm.networks.items():
                w = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy())
                     for t in onnx.load_from_string(net.data).graph.initializer}
                tn = model.nets[str(l)]
                tn.conv_x.weight.copy_(w["w_x"])
                tn.conv_m.weight.copy_(w["w_m"])
                tn.conv_m.bias.copy_(w["b_m"])
                tn.conv_out.weight.copy_(w["w_out"])
        return model

    # -- parameters -------------------------------------------------------------------------------
    def couplings(self) -> np.ndarray:
        """Per-level couplings as the manifest wants them: [K_nn, K_1, ..., K_{last-1}, beta]."""
        K = np.empty(self.hierarchy.n_levels)
        K[0] = float(self.coarsest_K[0].detach())
        for l in self.learned:
            K[l] = float(self.K[str(l)].detach())
        K[self.exact] = self.beta
        return K

    def coupling_parameters(self):
        return [self.coarsest_K, *self.K.values()]

    # -- levels -----------------------------------------------------------------------------------
    def coarsest_logits(self):
        lw = self.state_features @ self.coarsest_K
        return lw, torch.logsumexp(lw, 0)

    def level_logits(self, l: int, spins):
        """Log-odds ``(B, n_sites)`` float64 of level ``l``'s sites given the flat spins ``(B, L*L)``."""
        d = self._idx[l]
        lv = self.hierarchy.levels[l]
        B = spins.shape[0]
        if lv.kind == "decimated":  # exact: sum over the four summed-out axial neighbours of f(S_a)
            S = spins[:, d["second"]].reshape(B, -1, 4, 3).sum(3)
            return d["f"][((S + 3) / 2).long()].sum(2)
        nbsum = spins[:, d["nb"]].reshape(B, -1, 4).sum(2).double()
        K = self.beta if l == self.last else self.K[str(l)]
        a = 2.0 * K * nbsum
        if self.networks and l != self.last:
            h = lv.grid
            x = spins.reshape(B, self.size, self.size)[:, ::h, ::h] * d["mask"]
            xp = F.pad(x[:, None], (HALO,) * 4, mode="circular")
            net = self.nets[str(l)]
            v = net.conv_m(d["mask_padded"])
            out = net.at_phases(torch.cat([xp, d["mask_padded"].expand(B, 1, -1, -1)], 1), d["phases"], v=v)
            a = a + out[:, d["phase_idx"]].double()
        return a

    def _run(self, B: int, spins=None, generator=None):
        """Sample ``B`` configurations (``spins=None``) or score ``spins``; returns (flat spins float32, ln q float64)."""
        L = self.size
        sampling = spins is None
        s0 = self._idx[0]["sites"]
        lw, logz = self.coarsest_logits()
        if sampling:
            flat = torch.zeros(B, L * L)
            with torch.no_grad():
                idx = torch.multinomial(torch.softmax(lw, 0), B, replacement=True, generator=generator)
            flat[:, s0] = self.states[idx]
        else:
            flat = torch.as_tensor(spins).reshape(-1, L * L).float()
            B = flat.shape[0]
            bits = (flat[:, s0] > 0).long()
            idx = (bits * self._bits).sum(1)
        logq = lw[idx] - logz
        for lv in self.hierarchy.levels[1:]:
            sites = self._idx[lv.index]["sites"]
            a = self.level_logits(lv.index, flat)
            if sampling:
                with torch.no_grad():
                    u = torch.rand(a.shape, generator=generator, dtype=torch.float64)
                    s = torch.where(u < torch.sigmoid(a), 1.0, -1.0).float()
                flat[:, sites] = s
            else:
                s = flat[:, sites]
            logq = logq + F.logsigmoid(s.double() * a).sum(1)
        return flat, logq

    def sample(self, B: int, generator=None):
        """``(spins (B, L, L) float32 +-1, ln q (B,) float64 with gradient)``."""
        flat, logq = self._run(B, None, generator)
        return flat.reshape(B, self.size, self.size), logq

    def log_prob(self, spins):
        """``ln q(s)`` (float64, with gradient) of ``(B, L, L)`` +-1 configurations."""
        return self._run(0, spins)[1]

    def log_target(self, spins):
        """``ln p~(s) = beta sum_<ij> s_i s_j`` (float64)."""
        s = spins.double()
        return self.beta * (s * (torch.roll(s, -1, 1) + torch.roll(s, -1, 2))).sum((1, 2))


def _ess(f: torch.Tensor) -> float:
    """Per-sample ESS ``(sum w)^2 / (B sum w^2)`` from ``f = ln q - ln p~`` (``w = e^-f``)."""
    lw = -f.detach()
    lw = lw - lw.max()
    w = torch.exp(lw)
    return float(w.sum() ** 2 / (w.numel() * (w * w).sum()))


class TrainStage(dict):
    """Record of one training stage (a dict: size, steps, batch, objective, wall_seconds, history)."""


def train_stage(model: MultilevelTorch, *, steps: int, batch: int, lr: float = 1e-3, objective: str = "kl",
                seed: int = 0, ess_every: int = 25, log=None, params=None) -> TrainStage:
    """Train ``model`` in place for ``steps`` Adam steps on ``objective`` ("kl" or "chi2").

    The history records, every ``ess_every`` steps and at the end: step, mean and standard
    deviation of ``f = ln q - ln p~`` on the batch (``mean f`` estimates ``KL(q||p) - ln Z``),
    and the batch ESS. Returns a :class:`TrainStage`.
    """
    if objective not in ("kl", "chi2"):
        raise ValueError(f"objective must be 'kl' or 'chi2', got {objective!r}")
    gen = torch.Generator().manual_seed(int(seed))
    params = list(model.parameters()) if params is None else list(params)
    opt = torch.optim.Adam(params, lr=lr)
    hist = []
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        spins, logq = model.sample(batch, generator=gen)
        f = logq - model.log_target(spins)
        fd = f.detach()
        if objective == "kl":
            loss = ((f - f.mean()).detach() * logq).mean()
        else:
            lw = -f.detach()
            w = torch.exp(lw - torch.logsumexp(lw, 0)) * batch  # w / mean w
            loss = -(w * w * logq).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % ess_every == 0 or step == steps or step == 1:
            rec = {"step": step, "f_mean": float(fd.mean()), "f_std": float(fd.std()), "ess": _ess(fd),
                   "seconds": round(time.perf_counter() - t0, 2)}
            hist.append(rec)
            if log is not None:
                log(f"  L={model.size} {objective} step {step}/{steps}: <f> = {rec['f_mean']:.4f}, "
                    f"std f = {rec['f_std']:.4f}, batch ESS = {rec['ess']:.4f} ({rec['seconds']:.0f} s)")
    return TrainStage(size=model.size, objective=objective, steps=steps, batch=batch, lr=lr, seed=int(seed),
                      wall_seconds=time.perf_counter() - t0, history=hist)


def transfer(old: MultilevelTorch, size: int, scheme: str | None = None) -> MultilevelTorch:
    """A model for ``size`` (and ``scheme``, default the old one) initialised from ``old`` (seed 001 app. E.1).

    Scale invariance pairs levels by the side ``n = L / h`` of the grid they live on: with the
    coarsest lattice fixed, level ``k`` of the new model plays the role of level ``k`` of the old
    one. Each learned level of the new model gets the coupling and network of the old learned level
    with (1) the same grid side and kind, else (2) the same grid side and seed-001 kind (diagonal or
    axial: this converts a ``"seed001"`` model into a ``"split"`` one of the same size), else (3)
    the finest old learned level of the same kind, else of the same seed-001 kind. Everything else
    keeps the fresh initialisation (Maris-Kadanoff K, zero output layer).
    """
    scheme = scheme or old.scheme
    new = MultilevelTorch(size, old.beta, coarsest=old.coarsest, networks=old.networks, hidden=old.hidden,
                          scheme=scheme)
    if size < old.size or (size == old.size and scheme == old.scheme):
        raise ValueError(f"transfer goes to a larger lattice or another scheme, got {old.size} -> {size} "
                         f"({old.scheme} -> {scheme})")
    lo, ln = old.hierarchy.levels, new.hierarchy.levels
    mapping = {}
    for k in new.learned:
        nl = ln[k]
        for pick in (lambda j: lo[j].grid_size == nl.grid_size and lo[j].kind == nl.kind,
                     lambda j: lo[j].grid_size == nl.grid_size and lo[j].base_kind == nl.base_kind,
                     lambda j: lo[j].kind == nl.kind,
                     lambda j: lo[j].base_kind == nl.base_kind):
            cands = [j for j in old.learned if pick(j)]
            if cands:
                mapping[k] = cands[-1]
                break
    with torch.no_grad():
        new.coarsest_K.copy_(old.coarsest_K)
        for k_new, k_old in mapping.items():
            new.K[str(k_new)].copy_(old.K[str(k_old)])
            if new.networks:
                new.nets[str(k_new)].load_state_dict(old.nets[str(k_old)].state_dict())
    new.transfer_map = dict(mapping)
    return new


# -- export --------------------------------------------------------------------------------------

def build_onnx_level(model: MultilevelTorch, level: int, metadata: dict | None = None):
    """The ``multilevel-conditional-1`` ONNX graph of a learned level (opset 17), as ``onnx.ModelProto``.

    ``embedded (B, 2, n+6, n+6)`` -> ``logit (B, 1, n, n)`` = ``Conv7x7(x; 2K stencil)`` +
    ``Conv3x3(silu(v + u) - silu(v - u))``, ``u = Conv5x5(x)``, ``v = Conv5x5(m) + b``, valid convolutions.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    lv = model.hierarchy.levels[level]
    net = model.nets[str(level)]
    K = float(model.K[str(level)].detach())
    lin = np.zeros((1, 1, 2 * HALO + 1, 2 * HALO + 1), dtype=np.float32)
    lin[0, 0, HALO - 1:HALO + 2, HALO - 1:HALO + 2] = (2.0 * K * _stencil(lv.kind)).astype(np.float32)
    t = lambda p: p.detach().cpu().numpy().astype(np.float32)
    inits = [numpy_helper.from_array(lin, "w_hb"), numpy_helper.from_array(t(net.conv_x.weight), "w_x"),
             numpy_helper.from_array(t(net.conv_m.weight), "w_m"), numpy_helper.from_array(t(net.conv_m.bias), "b_m"),
             numpy_helper.from_array(t(net.conv_out.weight), "w_out"),
             numpy_helper.from_array(np.array([0], np.int64), "c0"), numpy_helper.from_array(np.array([1], np.int64), "c1"),
             numpy_helper.from_array(np.array([2], np.int64), "c2")]
    conv = {"strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1], "group": 1}
    nodes = [
        helper.make_node("Slice", ["embedded", "c0", "c1", "c1"], ["x"]),
        helper.make_node("Slice", ["embedded", "c1", "c2", "c1"], ["m"]),
        helper.make_node("Conv", ["x", "w_hb"], ["heat_bath"], kernel_shape=[7, 7], **conv),
        helper.make_node("Conv", ["x", "w_x"], ["u"], kernel_shape=[5, 5], **conv),
        helper.make_node("Conv", ["m", "w_m", "b_m"], ["v"], kernel_shape=[5, 5], **conv),
        helper.make_node("Add", ["v", "u"], ["h_pos"]),
        helper.make_node("Sub", ["v", "u"], ["h_neg"]),
        helper.make_node("Sigmoid", ["h_pos"], ["sg_pos"]),
        helper.make_node("Sigmoid", ["h_neg"], ["sg_neg"]),
        helper.make_node("Mul", ["h_pos", "sg_pos"], ["a_pos"]),
        helper.make_node("Mul", ["h_neg", "sg_neg"], ["a_neg"]),
        helper.make_node("Sub", ["a_pos", "a_neg"], ["odd"]),
        helper.make_node("Conv", ["odd", "w_out"], ["learned"], kernel_shape=[3, 3], **conv),
        helper.make_node("Add", ["heat_bath", "learned"], ["logit"]),
    ]
    graph = helper.make_graph(
        nodes, f"multilevel_level{level:02d}",
        [helper.make_tensor_value_info("embedded", TensorProto.FLOAT, ["B", 2, "N_padded", "N_padded"])],
        [helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["B", 1, "N", "N"])],
        initializer=inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="isingcore",
                          doc_string=f"isingcore multilevel-conditional-1: level {level} ({lv.kind}, grid {lv.grid})")
    m.ir_version = IR_VERSION
    md = {"isingcore.format": "multilevel-conditional-1", "isingcore.level": str(level),
          "isingcore.grid": str(lv.grid), "isingcore.kind": lv.kind, "isingcore.halo": str(HALO),
          "isingcore.coupling": repr(K), "isingcore.beta": repr(model.beta), "isingcore.size": str(model.size),
          "isingcore.architecture": f"2K*nn + W2*(silu(W1x*x + W1m*m + b) - silu(-W1x*x + W1m*m + b)); "
                                    f"5x5 -> {model.hidden} -> 3x3"}
    md.update({k: str(v) for k, v in (metadata or {}).items()})
    helper.set_model_props(m, md)
    onnx.checker.check_model(m)
    return m


def torch_level_logits(model: MultilevelTorch, level: int, padded: np.ndarray) -> np.ndarray:
    """Reference logits ``(B, 1, n, n)`` of the torch level on a padded embedded input (float64)."""
    lv = model.hierarchy.levels[level]
    net = model.nets[str(level)]
    x = torch.from_numpy(np.asarray(padded, dtype=np.float64))
    w = torch.from_numpy(2.0 * _stencil(lv.kind))[None, None] * model.K[str(level)].detach()
    with torch.no_grad():
        hb = F.conv2d(x[:, 0:1, HALO - 1:-(HALO - 1), HALO - 1:-(HALO - 1)], w)
        u = F.conv2d(x[:, 0:1], net.conv_x.weight.double())
        v = F.conv2d(x[:, 1:2], net.conv_m.weight.double(), net.conv_m.bias.double())
        out = F.conv2d(F.silu(v + u) - F.silu(v - u), net.conv_out.weight.double())
    return (hb + out).numpy()


def check_onnx_level(onnx_model, model: MultilevelTorch, level: int, *, tol: float = 1e-4, seed: int = 0,
                     batch: int = 4) -> float:
    """Largest ``|onnxruntime - torch|`` of a level's logits on random embedded inputs (several grid sizes).

    Inputs: random masks, spins +-1 on the mask (0 elsewhere), and the level's own embedding
    pattern; raises :class:`OnnxCheckError` beyond ``tol``.
    """
    import onnxruntime as ort

    sess = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    lv = model.hierarchy.levels[level]
    rng = np.random.default_rng(seed)
    worst = 0.0
    for n in sorted({lv.grid_size, 8, 12}):
        m = (rng.random((batch, 1, n, n)) < 0.5).astype(np.float32)
        if n == lv.grid_size:
            m[0, 0] = model._idx[level]["mask"].numpy()
        x = np.where(rng.random((batch, 1, n, n)) < 0.5, 1.0, -1.0).astype(np.float32) * m
        emb = np.pad(np.concatenate([x, m], 1), ((0, 0), (0, 0), (HALO, HALO), (HALO, HALO)), mode="wrap")
        (got,) = sess.run(["logit"], {"embedded": emb})
        ref = torch_level_logits(model, level, emb)
        if got.shape != ref.shape:
            raise OnnxCheckError(f"level {level}: ONNX output shape {got.shape}, torch {ref.shape}")
        diff = float(np.max(np.abs(got - ref)))
        if not diff <= tol:
            raise OnnxCheckError(f"level {level}: onnxruntime and torch logits differ by {diff:.3g} > {tol:g} "
                                 f"on a {n}x{n} grid: not written")
        worst = max(worst, diff)
    return worst


def beta_tag(beta: float) -> str:
    """``kc`` for the critical coupling, else ``b`` + the digits after the point (0.44 -> ``b044``)."""
    from ..constants import BETA_C

    if math.isclose(beta, BETA_C, rel_tol=1e-12):
        return "kc"
    return "b" + f"{beta:g}".replace(".", "").replace("-", "m")


def model_name(prefix: str, beta: float, size: int) -> str:
    return f"{prefix}-{beta_tag(beta)}-L{size}"


def measure_ess(directory: str, n: int, seed: int = 2026) -> dict:
    """:func:`measure_sampler` of ``MultilevelSampler(model=directory)``."""
    from .sampler import MultilevelSampler

    return measure_sampler(MultilevelSampler(model=directory), n, seed)


def measure_sampler(smp, n: int, seed: int = 2026) -> dict:
    """ESS per sample of a runtime :class:`MultilevelSampler` from ``n`` samples (streams 0..n-1 of ``seed``).

    Also ``ln Z`` (estimate and Kaufman's exact value), ``KL(q||p) = ln Z - mean ln w`` (the exact
    ``ln Z`` makes this a low-variance measure of the model, unlike the heavy-tailed ESS at large
    L) and the mode-dropping measure ``Z_hat / Z``.
    """
    from ..exact import kaufman_torus
    from .estimators import effective_sample_size, log_partition_function

    t0 = time.perf_counter()
    out = smp.sample(n, seed=seed)
    secs = round(time.perf_counter() - t0, 2)
    lz = log_partition_function(out.log_w)
    exact = float(kaufman_torus(smp.beta, smp.size).ln_z) * smp.size ** 2
    return {"ess": effective_sample_size(out.log_w), "ess_samples": int(n), "ess_seed": int(seed),
            "ln_z": lz.mean, "ln_z_error": lz.error, "ln_z_exact": exact,
            "kl": exact - float(np.mean(out.log_w)), "mode_dropping": float(np.exp(lz.mean - exact)),
            "sampling_seconds": secs}


def export_model(model: MultilevelTorch, directory: str, *, name: str, training: dict, ess_samples: int = 0,
                 ess_seed: int = 2026, tol: float = 1e-4, history=None) -> dict:
    """Write a model directory: one checked ONNX file per learned level, ``manifest.json``
    (:func:`.models.write_manifest`), ``history.json``; with ``ess_samples`` the ESS measured by the
    runtime sampler goes into ``training``. Nothing is written if an ONNX check fails."""
    import onnx

    from .models import write_manifest

    meta = {"isingcore.model": name, "isingcore.training_steps": training.get("steps_total", ""),
            "isingcore.seed": training.get("seed", ""), "isingcore.torch": torch.__version__}
    built, diffs = {}, {}
    if model.networks:
        for l in model.learned:
            m = build_onnx_level(model, l, meta)
            diffs[l] = check_onnx_level(m, model, l, tol=tol)
            built[l] = m
    os.makedirs(directory, exist_ok=True)
    files = {}
    for l, m in built.items():
        files[l] = f"level{l:02d}.onnx"
        onnx.save_model(m, os.path.join(directory, files[l]))
    training = dict(training)
    if diffs:
        training["onnx_max_abs_diff"] = max(diffs.values())
    kw = {"name": name, "size": model.size, "beta": model.beta, "coarsest": model.coarsest, "scheme": model.scheme,
          "coarsest_couplings": [float(v) for v in model.coarsest_K.detach()], "couplings": model.couplings(),
          "networks": files}
    write_manifest(directory, training=training, **kw)
    if history is not None:
        with open(os.path.join(directory, "history.json"), "w") as fh:
            json.dump(history, fh, separators=(",", ":"))
    if ess_samples:
        training.update(measure_ess(directory, ess_samples, ess_seed))
        write_manifest(directory, training=training, **kw)
    return training
