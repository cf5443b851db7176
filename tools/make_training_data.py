"""Write an equilibrated, decorrelated critical ensemble for training upscalers (isingcore HDF5).

    python tools/make_training_data.py --size 96 --configs 4000 --chains 8 --seed 1 --out data/train_L96.h5

Schedule, measured rather than guessed:

1. A pilot run (``--pilot`` sweeps, default 400, on ``--chains`` replicas after a thermalisation of
   20 x tau_guess) measures tau_int of the energy and of m^2 with the Gamma method
   (:func:`isingcore.measure.gamma_method`, all chains as replicas).
2. The production run continues the same chains; configurations are stored every
   ``spacing = ceil(2 * max(tau_int(E), tau_int(m^2)) + 2 * error)`` sweeps (at least 2 tau_int,
   so neighbouring stored configurations are nearly independent), after ``thermalize = 20 *
   tau_int`` further sweeps.
3. The measured tau_int values, their errors and the schedule go into the file's attributes
   (``extra``); the run is reproducible from ``--seed`` (chains are RNG streams 0..C-1).

The algorithm is a cluster algorithm (Wolff by default): DESIGN.md section 5.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np

import isingcore
from isingcore import io as iio
from isingcore.measure import gamma_method
from isingcore.simulation import Simulation, tau_guess


def pilot_tau(sim: Simulation, n_sweeps: int, progress: bool) -> dict:
    """tau_int of E and m^2 (in sweeps) from ``n_sweeps`` sweeps of every chain, measured every sweep."""
    E, M2 = [], []
    it = range(n_sweeps)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="pilot", unit="sweep")
    for _ in it:
        sim.sweep(1)
        E.append(np.asarray(sim.energy(), dtype=np.float64))
        M2.append(np.asarray(sim.magnetization(), dtype=np.float64) ** 2)
    E = np.array(E).T  # (chains, time)
    M2 = np.array(M2).T
    e = gamma_method(tuple(E))
    m = gamma_method(tuple(M2))
    return dict(tau_E=e.tau_int, dtau_E=e.tau_int_error, tau_m2=m.tau_int, dtau_m2=m.tau_int_error)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, required=True, help="linear size L (even)")
    p.add_argument("--configs", type=int, required=True, help="total configurations (split over the chains)")
    p.add_argument("--chains", type=int, default=8, help="independent chains (RNG streams)")
    p.add_argument("--algorithm", choices=("wolff", "swendsen-wang"), default="wolff")
    p.add_argument("--beta", type=float, default=isingcore.BETA_C)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--pilot", type=int, default=400, help="pilot sweeps per chain for tau_int")
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--purpose", default="training data for inverse-RG upscalers",
                   help="free text stored in the file (e.g. 'cluster-MC reference')")
    a = p.parse_args(argv)
    if a.configs % a.chains:
        p.error(f"--configs ({a.configs}) must be a multiple of --chains ({a.chains})")
    if os.path.exists(a.out) and not a.overwrite:
        p.error(f"{a.out} exists; pass --overwrite")
    per_chain = a.configs // a.chains

    sim = Simulation(size=a.size, beta=a.beta, algorithm=a.algorithm, seed=a.seed, replicas=a.chains)
    t0 = time.perf_counter()
    sim.sweep(int(math.ceil(20 * tau_guess(a.algorithm, a.size))), progress=a.progress)
    tau = pilot_tau(sim, a.pilot, a.progress)
    t_max = max(tau["tau_E"], tau["tau_m2"])
    err = max(tau["dtau_E"], tau["dtau_m2"])
    spacing = max(1, int(math.ceil(2 * t_max + 2 * err)))
    thermalize = int(math.ceil(20 * t_max))
    print(f"L={a.size} {a.algorithm}: tau_int(E) = {tau['tau_E']:.2f}({tau['dtau_E']:.2f}), "
          f"tau_int(m^2) = {tau['tau_m2']:.2f}({tau['dtau_m2']:.2f}) sweeps -> spacing {spacing}, "
          f"further thermalisation {thermalize}", file=sys.stderr)
    sim.sweep(thermalize, progress=a.progress)

    attrs = dict(algorithm=a.algorithm, beta=sim.beta, J=1.0, h=0.0, Lx=a.size, Ly=a.size, seed=a.seed,
                 thermalization=int(math.ceil(20 * tau_guess(a.algorithm, a.size))) + a.pilot + thermalize,
                 spacing=spacing, backend="numpy",
                 extra=dict(purpose=a.purpose, chains=a.chains,
                            configs_per_chain=per_chain, pilot_sweeps=a.pilot, **{k: float(v) for k, v in tau.items()},
                            command="python tools/make_training_data.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                            isingcore_version=isingcore.__version__))
    names = ["energy", "magnetization", "c10x", "c10y", "c11"]
    chains = np.arange(a.chains, dtype=np.int32)
    it = range(per_chain)
    if a.progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="sampling", unit="config x chains")
    with iio.EnsembleWriter.create(a.out, attrs, names, overwrite=True) as w:
        for _ in it:
            sim.sweep(spacing)
            obs = {k: np.asarray(v) for k, v in sim.measure().items() if k in names}
            w.append(sim.spins, obs, chain=chains, step=sim.steps.copy())
    print(f"wrote {a.configs} configurations of {a.size}^2 to {a.out} in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
