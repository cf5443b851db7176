"""Finite-size scaling (isingcore.measure.fss): pairs, weighted fits, exact C(L), P(m) collapse."""

import math

import numpy as np
import pytest

from isingcore import exact
from isingcore.measure import fss
from isingcore.measure.autocorrelation import Estimate

K_C = 0.5 * math.log(1.0 + math.sqrt(2.0))
SIZES = [16, 32, 64, 128, 256]


def est(mean, error):
    return Estimate(float(mean), float(error), 0.5, 0.0, 1, 1000)


def test_exact_power_law_is_recovered():
    Y = [est(3.0 * L**1.75, 0.01 * 3.0 * L**1.75) for L in SIZES]
    f = fss.power_law_fit(SIZES, Y)
    assert f.value == pytest.approx(1.75, abs=1e-12)
    assert f.amplitude == pytest.approx(3.0, rel=1e-12)
    assert f.chi2 == pytest.approx(0.0, abs=1e-20) and f.dof == 3
    assert f.error == f.statistical_error  # chi2/dof < 1: no inflation
    # stat error of the slope of a straight line with equal errors s = 0.01 in ln Y
    x = np.log(SIZES)
    assert f.statistical_error == pytest.approx(0.01 / math.sqrt(np.sum((x - x.mean()) ** 2)), rel=1e-10)
    # (mean, error) tuples and plain values with errors are the same input
    g = fss.power_law_fit(SIZES, [e.mean for e in Y], [e.error for e in Y])
    assert g.value == f.value and g.error == f.error
    for L in (64, 128, 256):
        p = fss.pair_exponent(Y[SIZES.index(L)], (Y[SIZES.index(L // 4)].mean, Y[SIZES.index(L // 4)].error),
                              4, sizes=(L // 4, L))
        assert p.value == pytest.approx(1.75, abs=1e-12)
        assert p.error == pytest.approx(math.sqrt(2) * 0.01 / math.log(4), rel=1e-12)
        assert p.amplitude == pytest.approx(3.0, rel=1e-12)


def test_power_law_with_correction_is_recovered():
    Y = [(2.0 * L**1.0 * (1 + 0.8 / L), 1e-3 * 2.0 * L) for L in SIZES]
    plain = fss.power_law_fit(SIZES, Y)
    assert plain.value < 0.99 and plain.chi2 > 10 * plain.dof  # the correction biases a pure power law
    assert plain.error == pytest.approx(plain.statistical_error * math.sqrt(plain.chi2 / plain.dof))
    f = fss.power_law_fit(SIZES, Y, correction_exponent=1.0)
    assert f.model == "power+correction" and f.dof == 2
    assert f.value == pytest.approx(1.0, abs=1e-8)
    A, B, p = f.params
    assert A == pytest.approx(2.0, rel=1e-7) and B / A == pytest.approx(0.8, rel=1e-6)
    assert f.chi2 < 1e-10


def test_fit_errors_propagate_from_the_inputs():
    """Noisy data drawn with the quoted errors: the spread of the fitted exponent matches its error."""
    rng = np.random.default_rng(1)
    true = np.array([5.0 * L**1.75 for L in SIZES])
    sig = 0.02 * true
    vals, errs, pairs = [], [], []
    for _ in range(400):
        y = true + sig * rng.normal(size=true.size)
        f = fss.power_law_fit(SIZES, y, sig)
        vals.append(f.value)
        errs.append(f.statistical_error)
        pairs.append(fss.pair_exponent((y[4], sig[4]), (y[2], sig[2])).value)
    assert np.std(vals, ddof=1) == pytest.approx(np.mean(errs), rel=0.12)
    assert np.mean(vals) == pytest.approx(1.75, abs=3 * np.mean(errs) / 20)
    assert np.std(pairs, ddof=1) == pytest.approx(math.hypot(0.02, 0.02) / math.log(4), rel=0.12)


def test_bad_fit_inflates_the_error_by_sqrt_chi2_dof():
    y = [(L**2.0 * (1.3 if i % 2 else 0.7), 0.01 * L**2) for i, L in enumerate(SIZES)]
    f = fss.power_law_fit(SIZES, y)
    assert f.chi2 / f.dof > 100
    assert f.scale_factor == pytest.approx(math.sqrt(f.chi2 / f.dof))
    assert f.error == pytest.approx(f.statistical_error * f.scale_factor)


def test_kaufman_exact_specific_heat_gives_the_log_slope():
    """C(L) = a + b ln L + O(ln L / L) at K_c with b = (8/pi) K_c^2 (Ferdinand and Fisher 1969)."""
    assert fss.SPECIFIC_HEAT_LOG_SLOPE == pytest.approx(0.494538589532, abs=1e-12)
    Ls = [64, 128, 256, 512, 1024, 2048, 4096]
    C = [float(exact.kaufman_torus(K_C, L).specific_heat) for L in Ls]
    f = fss.log_law_fit(Ls, C, [1e-6] * len(Ls), correction_exponent=1.0)
    assert f.value == pytest.approx(fss.SPECIFIC_HEAT_LOG_SLOPE, abs=2e-6)
    assert abs(f.value - fss.SPECIFIC_HEAT_LOG_SLOPE) < 3 * f.error
    plain = fss.log_law_fit(Ls, C, [1e-6] * len(Ls))
    assert plain.value == pytest.approx(fss.SPECIFIC_HEAT_LOG_SLOPE, abs=1e-3)  # the O(1/L) term biases it
    p = fss.pair_log_slope((C[-1], 0.0), (C[-3], 0.0), 4, sizes=(1024, 4096))
    assert p.value == pytest.approx(fss.SPECIFIC_HEAT_LOG_SLOPE, abs=2e-4)
    assert p.amplitude == pytest.approx(C[-3] - p.value * math.log(1024))
    # the local slope approaches b from above, as 1/L
    d = [(C[i + 1] - C[i]) / math.log(2) - fss.SPECIFIC_HEAT_LOG_SLOPE for i in range(len(C) - 1)]
    assert all(x > 0 for x in d) and all(0.4 < d[i + 1] / d[i] < 0.6 for i in range(len(d) - 1))


def test_fss_exponents_from_estimates():
    obs = {L: {"chi": est(0.9 * L**1.75, 0.005 * 0.9 * L**1.75), "c_me": est(0.7 * L, 0.01 * 0.7 * L),
               "specific_heat": est(0.14 + fss.SPECIFIC_HEAT_LOG_SLOPE * math.log(L), 0.01)} for L in [8] + SIZES}
    r = fss.fss_exponents(obs, L_min=16)
    assert r["sizes"] == SIZES
    assert r["gamma_over_nu"]["fit"].value == pytest.approx(1.75, abs=1e-12)
    assert r["one_over_nu"]["fit"].value == pytest.approx(1.0, abs=1e-12)
    assert r["specific_heat_slope"]["fit"].value == pytest.approx(fss.SPECIFIC_HEAT_LOG_SLOPE, abs=1e-12)
    assert set(r["gamma_over_nu"]["pairs"]) == {(32, 8), (64, 16), (128, 32), (256, 64)}
    assert r["gamma_over_nu"]["pairs"][(32, 8)].sizes == (8, 32)
    assert r["specific_heat_slope"]["pairs"][(64, 16)].value == pytest.approx(fss.SPECIFIC_HEAT_LOG_SLOPE)
    assert r["one_over_nu"]["exact"] == 1.0
    r2 = fss.fss_exponents(obs, sizes=[16, 64], c_me_correction=1.0)
    assert r2["one_over_nu"]["fit"] is None  # too few sizes for a correction term
    with pytest.raises(ValueError, match="sizes"):
        fss.fss_exponents(obs, sizes=[16, 48])
    with pytest.raises(ValueError, match="ratio"):
        fss.fss_exponents(obs, ratio=1)


def write_ensemble(path, L, spins, chains):
    from isingcore.io import EnsembleWriter

    attrs = dict(algorithm="wolff", beta=K_C, J=1.0, h=0.0, Lx=L, Ly=L, seed=1, thermalization=10, spacing=1,
                 backend="numpy")
    n = spins.shape[0]
    chain = np.arange(n) % chains
    step = np.arange(n) // chains
    with EnsembleWriter.create(path, attrs) as w:
        w.append(spins, None, chain, step)


def test_observables_from_ensemble_files(tmp_path):
    from isingcore.measure import gamma_method, magnetization_energy_cumulant, specific_heat

    rng = np.random.default_rng(2)
    paths = {}
    for L in (4, 8):
        s = np.where(rng.random((64, L, L)) < rng.uniform(0.2, 0.8, size=(64, 1, 1)), 1, -1).astype(np.int8)
        paths[L] = tmp_path / f"e{L}.h5"
        write_ensemble(paths[L], L, s, chains=4)
    obs = fss.fss_observables(paths)
    from isingcore.io import open_ensemble

    with open_ensemble(paths[8]) as e:
        m = np.asarray(e.observables["magnetization"]).reshape(16, 4).T  # chain-major (C, n)
        en = np.asarray(e.observables["energy"]).reshape(16, 4).T
    assert obs[8]["chi"].mean == pytest.approx(K_C * 64 * np.mean(m**2), rel=1e-12)
    assert obs[8]["chi"].error == pytest.approx(K_C * 64 * gamma_method(m**2).error, rel=1e-12)
    assert obs[8]["c_me"].mean == pytest.approx(magnetization_energy_cumulant(np.abs(m), en, 64).mean, rel=1e-12)
    assert obs[8]["specific_heat"].mean == pytest.approx(specific_heat(en, K_C, 64).mean, rel=1e-12)
    with pytest.raises(ValueError, match="another size"):
        fss.fss_observables({16: paths[8]})


def test_magnetization_histograms_and_collapse(tmp_path):
    L = 8
    N = L * L
    # a known histogram: 10 configurations at m = 0, 5 at each of m = +-2/N, 1 at m = 1
    m = np.array([0.0] * 10 + [2.0 / N] * 5 + [-2.0 / N] * 5 + [1.0])
    h = fss.magnetization_collapse({L: m}, width=1e-6)[L]  # one allowed value per bin
    step_x = 2.0 * L**0.125 / N
    assert h.width == pytest.approx(step_x)
    assert np.allclose(np.diff(h.x), step_x) and h.x[N // 2] == 0.0 and h.x[0] == pytest.approx(-L**0.125)
    assert h.density.sum() * h.width == pytest.approx(1.0)
    assert h.density[N // 2] == pytest.approx(10 / (21 * step_x))
    assert h.density[N // 2 + 1] == h.density[N // 2 - 1] == pytest.approx(5 / (21 * step_x))
    assert h.density[-1] == pytest.approx(1 / (21 * step_x))
    x, r = h.log_ratio()
    assert r[N // 2] == 0.0 and r[N // 2 + 1] == pytest.approx(math.log(0.5))
    g = fss.magnetization_collapse({L: m}, width=3 * step_x)[L]  # 3 values per bin, centred on m = 0
    assert g.width == pytest.approx(3 * step_x)
    assert g.density[len(g.x) // 2] * g.width == pytest.approx(20 / 21)
    with pytest.raises(ValueError, match="magnetisations"):
        fss.magnetization_collapse({L: np.array([0.01])})
    with pytest.raises(ValueError, match="even number of sites"):
        fss.magnetization_collapse({5: np.array([0.2])})


def test_collapse_of_exact_distributions_and_plot(tmp_path):
    """Exact P_L(m) (transfer matrix) at K_c for L = 6, 8, 10: the rescaled curves nearly coincide."""
    pytest.importorskip("matplotlib")
    src = {}
    for L in (6, 8, 10):
        m, p = exact.magnetization_distribution(K_C, L)
        src[L] = np.repeat(m, np.rint(p * 200000).astype(int))
    hist = fss.magnetization_collapse(src, width=1e-6)
    first = [np.sum(np.abs(h.x) * h.density) * h.width for h in hist.values()]  # <|x|> = L^(1/8) <|m|>
    assert max(first) / min(first) - 1 < 0.005
    raw = fss.magnetization_collapse(src, beta_over_nu=0.0, width=1e-6)
    first = [np.sum(np.abs(h.x) * h.density) * h.width for h in raw.values()]  # <|m|>: not scale invariant
    assert max(first) / min(first) - 1 > 0.05
    hist = fss.magnetization_collapse(src, width=0.15)
    out = tmp_path / "collapse.png"
    fig = fss.plot_magnetization_collapse(hist, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and fig is not None
    fss.plot_magnetization_collapse(hist, tmp_path / "d.png", log_ratio=False)
    with pytest.raises(ValueError, match="empty"):
        fss.plot_magnetization_collapse({})


def test_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match="distinct"):
        fss.power_law_fit([16, 16], [(1, 0.1), (2, 0.1)])
    with pytest.raises(ValueError, match="error > 0"):
        fss.power_law_fit([16, 32], [(1, 0.0), (2, 0.1)])
    with pytest.raises(ValueError, match="positive"):
        fss.power_law_fit([16, 32], [(-1, 0.1), (2, 0.1)])
    with pytest.raises(ValueError, match="at least 3"):
        fss.power_law_fit([16, 32], [(1, 0.1), (2, 0.1)], correction_exponent=1.0)
    with pytest.raises(ValueError, match="correction_exponent"):
        fss.log_law_fit([16, 32, 64], [(1, 0.1), (2, 0.1), (3, 0.1)], correction_exponent=-1.0)
    with pytest.raises(ValueError, match="ratio"):
        fss.pair_exponent((2, 0.1), (1, 0.1), ratio=1.0)
    with pytest.raises(TypeError, match="Estimate or a"):
        fss.pair_exponent("x", (1, 0.1))
    with pytest.raises(ValueError, match="same length"):
        fss.log_law_fit([16, 32, 64], [(1, 0.1), (2, 0.1)])
    with pytest.raises(TypeError, match="mapping"):
        fss.fss_observables([16, 32])
