"""Validation table: local updates against exact results (the numbers behind tests/test_local_statistics.py).

    python tools/validate_local.py [--replicas 64] [--sweeps 3000]

For each algorithm, L in (8, 16) and K in (K_c, 0.3, 0.6): energy and specific heat against
Kaufman's finite-torus values, and (L = 8) <m^2>, <m^4> against the transfer matrix; Gamma-method
errors over independent replicas; z = (estimate - exact) / error.
"""

import argparse

import numpy as np

import isingcore
from isingcore import exact
from isingcore.measure import gamma_method, specific_heat


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--replicas", type=int, default=64)
    ap.add_argument("--sweeps", type=int, default=3000)
    ap.add_argument("--thermalize", type=int, default=1000)
    args = ap.parse_args()
    print(f"{'algorithm':<11}{'L':>3}{'K':>9}  {'observable':<14}{'estimate':>16}{'exact':>15}{'z':>7}{'tau_int':>9}")
    for alg in ("metropolis", "heatbath"):
        for L in (8, 16):
            for K in (isingcore.BETA_C, 0.3, 0.6):
                sim = isingcore.Simulation(L, K, alg, seed=17 + L, replicas=args.replicas,
                                           start="cold" if K > 0.5 else "random")
                sim.sweep(args.thermalize)
                e = np.empty((args.replicas, args.sweeps))
                m = np.empty_like(e)
                for t in range(args.sweeps):
                    sim.sweep(1)
                    e[:, t], m[:, t] = sim.energy(), sim.magnetization()
                ref = exact.kaufman_torus(K, L)
                rows = [("energy", gamma_method(e), ref.energy), ("specific_heat", specific_heat(e, K, L * L), ref.specific_heat)]
                if L == 8:
                    mm = exact.magnetization_moments(K, L)
                    rows += [("m2", gamma_method(m**2), mm.m2), ("m4", gamma_method(m**4), mm.m4)]
                for name, est, ex in rows:
                    z = (est.mean - ex) / est.error
                    print(f"{alg:<11}{L:>3}{K:>9.5f}  {name:<14}{str(est):>16}{ex:>15.10f}{z:>+7.2f}{est.tau_int:>9.2f}")


if __name__ == "__main__":
    main()
