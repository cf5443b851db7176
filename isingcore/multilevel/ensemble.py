"""Multilevel samples as HDF5 ensembles, and their analysis.

``isingcore sample --algorithm multilevel`` writes independent draws ``s_m ~ q`` as one chain
(``chain = 0``, ``step = m``, the Philox stream of the draw) with the series ``log_q`` (``ln q(s)``)
and ``log_w`` (``-beta H(s) - ln q(s)``) next to the usual observables. The draws follow q, not
the Boltzmann distribution, so :func:`importance_summary` (used by ``isingcore analyze``) turns
them into exact estimates two ways: importance weights (ESS, ``ln Z``, reweighted means) and an
independence Metropolis-Hastings chain over the draws in file order, which is exact MCMC and is
analysed like any Markov chain (``tau_int`` in proposals).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from ..measure import measure
from .._array import to_numpy

OBSERVABLES = {"energy": "", "magnetization": "", "c10x": "nearest-neighbour correlation along x",
               "c10y": "nearest-neighbour correlation along y", "c11": "diagonal correlation",
               "log_q": "ln q(s): exact log-probability of the multilevel sampler",
               "log_w": "ln w = -beta H(s) - ln q(s): log importance weight"}


def sampler_attrs(sampler, seed: int, command: str | None = None) -> dict:
    """The ensemble attributes of a multilevel run (provenance enough to redraw every sample)."""
    extra = dict(sampler=sampler.kind, coarsest=sampler.hierarchy.coarsest, scheme=sampler.hierarchy.scheme,
                 couplings=[float(k) for k in sampler.couplings],
                 coarsest_couplings=list(sampler.coarsest_level.couplings),
                 command=command if command is not None else (" ".join(sys.argv[1:]) or "isingcore"))
    if sampler.model is not None:
        extra["model"] = sampler.model.name
        extra["model_path"] = sampler.model.path
    return dict(algorithm="multilevel", beta=sampler.beta, J=1.0, h=0.0, Lx=sampler.size, Ly=sampler.size, seed=seed,
                thermalization=0, spacing=1, backend=sampler.backend, extra=extra)


def sample_ensemble(path: str, sampler, n: int, *, seed: int, batch: int = 256, overwrite: bool = False,
                    resume: bool = False, progress: bool = False, log=print) -> str:
    """Draw ``n`` configurations into ``path`` (flushed batch by batch; ``resume`` continues a run)."""
    from .. import io as iio

    attrs = sampler_attrs(sampler, seed)
    if resume and os.path.exists(path):
        writer = iio.EnsembleWriter.resume(path)
        stored = dict(writer.attrs)
        stored.update(stored.get("extra") or {})
        want = {**attrs, **attrs["extra"]}
        for key in ("algorithm", "beta", "Lx", "seed", "sampler", "scheme", "couplings", "coarsest_couplings"):
            if key in stored and stored[key] != want[key]:
                writer.close()
                raise SystemExit(f"isingcore sample --resume: {path} was written with {key}={stored[key]!r}, "
                                 f"not {want[key]!r}; use the same parameters or another --out")
    else:
        if os.path.exists(path) and not overwrite:
            raise SystemExit(f"isingcore sample: {path} exists; pass --resume to continue it or --overwrite to replace it")
        writer = iio.EnsembleWriter.create(path, attrs, OBSERVABLES, overwrite=True)
    with writer:
        done = len(writer)
        bar = None
        if progress and done < n:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, initial=done, unit="config", desc="multilevel sampling")
        t0 = time.perf_counter()
        for b0 in range(done, n, batch):
            k = min(batch, n - b0)
            smp = sampler.sample(k, seed=seed, first=b0)
            obs = {key: to_numpy(v) for key, v in measure(smp.spins).items() if key in OBSERVABLES}
            obs["log_q"], obs["log_w"] = smp.log_q, smp.log_w
            writer.append(smp.spins, obs, chain=np.zeros(k, dtype=np.int32), step=smp.streams)
            writer.flush()
            if bar is not None:
                bar.update(k)
        if bar is not None:
            bar.close()
        dt = time.perf_counter() - t0
    if n > done:
        log(f"wrote {n - done} multilevel configurations to {path} in {dt:.1f} s ({dt / (n - done) * 1e3:.3f} ms each)")
    return path


def importance_summary(ens, S: float = 2.0) -> tuple[dict, dict]:
    """(summary, IMH-chain estimates) of an ensemble that stores ``log_w``.

    ``summary``: ``ess``, ``ln_z`` (with error; the whole lattice), ``ln_z_exact`` (Kaufman),
    ``mode_dropping`` (``Z_hat / Z``), reweighted ``energy`` and ``m2`` with errors, and the
    independence-MH ``acceptance``; the second dict maps observable names to :class:`Estimate` from
    :func:`isingcore.measure.analyze_series` on the independence-MH chain.
    """
    from ..exact import kaufman_torus
    from ..measure import analyze_series
    from .estimators import (effective_sample_size, independence_metropolis, log_partition_function, mode_dropping,
                             reweight)

    a = ens.attrs
    L, beta = int(a["Lx"]), float(a["beta"])
    order = np.argsort(np.asarray(ens.step), kind="stable")
    obs = {k: np.asarray(ens.observables[k], dtype=np.float64)[order] for k in ens.observables}
    log_w = obs["log_w"]
    lz = log_partition_function(log_w)
    ln_z_exact = float(kaufman_torus(beta, L, int(a["Ly"])).ln_z) * L * int(a["Ly"])
    chain = independence_metropolis(log_w, seed=int(a.get("seed", 0)), stream=0)
    m = obs["magnetization"]
    series = {k: obs[k][chain.state] for k in ("energy", "c10x", "c10y", "c11") if k in obs}
    ms = m[chain.state]
    series.update(magnetization=ms, abs_m=np.abs(ms), m2=ms**2, m4=ms**4)
    est = analyze_series(series, beta=beta, n_sites=L * int(a["Ly"]), h=0.0, S=S)
    e, m2 = reweight(obs["energy"], log_w), reweight(m**2, log_w)
    md = mode_dropping(log_w, ln_z_exact)
    summary = {
        "n_samples": int(log_w.size),
        "ess": effective_sample_size(log_w),
        "ln_z": {"mean": lz.mean, "error": lz.error},
        "ln_z_exact": ln_z_exact,
        "mode_dropping": {"mean": md.mean, "error": md.error},
        "reweighted": {"energy": {"mean": e.mean, "error": e.error}, "m2": {"mean": m2.mean, "error": m2.error}},
        "imh_acceptance": chain.acceptance,
    }
    return summary, est
