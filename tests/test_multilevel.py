"""Multilevel sampler: hierarchy, exact log q, sampling distribution, estimators, files."""

from __future__ import annotations

import json
import math
import os

import array_api_compat.numpy
import numpy as np
import pytest

from isingcore import BETA_C
from isingcore.exact import kaufman_torus, magnetization_moments
from isingcore.multilevel import (Hierarchy, MultilevelModelError, MultilevelSampler, effective_sample_size,
                                  independence_metropolis, load_model, log_partition_function, mode_dropping,
                                  reweight)
from isingcore.multilevel.coarsest import CoarsestLevel, state_spins
from isingcore.multilevel.models import write_manifest


def state_index(spins) -> np.ndarray:
    s = np.asarray(spins).reshape(len(spins), -1) > 0
    n = s.shape[1]
    return (s.astype(np.int64) << np.arange(n - 1, -1, -1)).sum(axis=1)


@pytest.mark.parametrize("L,c", [(4, 2), (8, 4), (16, 4), (16, 2), (4, 4)])
def test_hierarchy_partitions_the_lattice_and_neighbours_are_coarser(L, c):
    H = Hierarchy(L, c)
    counts = np.zeros(L * L, dtype=int)
    for lv in H.levels:
        counts[lv.sites] += 1
        if lv.neighbours is not None:
            nb_levels = H.level_of_site.reshape(-1)[lv.neighbours]
            assert np.all(nb_levels < lv.index), lv.describe()
            # the neighbours are at distance h (axial) or h*sqrt(2) (diagonal)
            x, y = lv.sites // L, lv.sites % L
            nx, ny = lv.neighbours // L, lv.neighbours % L
            dx = np.minimum((nx - x[:, None]) % L, (x[:, None] - nx) % L)
            dy = np.minimum((ny - y[:, None]) % L, (y[:, None] - ny) % L)
            want = (lv.grid, lv.grid) if lv.kind == "diagonal" else None
            if want:
                assert np.all(dx == lv.grid) and np.all(dy == lv.grid)
            else:
                assert np.all(dx + dy == lv.grid)
    assert np.all(counts == 1)
    assert H.levels[0].n_sites == c * c
    assert H.levels[-1].grid == (1 if L > c else L // c)
    assert H.n_levels == 1 + 2 * int(round(math.log2(L // c)))


@pytest.mark.parametrize("L,c", [(4, 2), (8, 4), (16, 4), (16, 2), (32, 4)])
def test_split_hierarchy_refines_the_seed001_levels(L, c):
    """Each seed-001 level is split in two sub-lattices (the finest axial level stays whole); the
    second conditions on the first; neighbours stay coarser; the nearest pairs inside a seed-001
    level straddle its two sub-lattices."""
    H0, H = Hierarchy(L, c), Hierarchy(L, c, "split")
    lev0 = H0.level_of_site.reshape(-1)
    counts = np.zeros(L * L, dtype=int)
    for lv in H.levels:
        counts[lv.sites] += 1
        assert len(set(lev0[lv.sites])) == 1  # inside one seed-001 level
        if lv.neighbours is not None and lv.kind != "decimated":
            assert np.all(H.level_of_site.reshape(-1)[lv.neighbours] < lv.index), lv.describe()
        if lv.kind == "decimated":
            assert lv.grid == 1 and np.all(H.level_of_site.reshape(-1)[lv.second_neighbours] < lv.index)
            # the four neighbours are not drawn yet (summed out) and each touches exactly one decimated site
            assert np.all(H.level_of_site.reshape(-1)[lv.neighbours] > lv.index)
            touched = np.bincount(lv.neighbours.reshape(-1), minlength=L * L)
            assert set(np.unique(touched[touched > 0])) == {1}
    assert np.all(counts == 1)
    n_h = int(round(math.log2(L // c)))
    assert H.n_levels == 1 + 4 * n_h - 1
    assert [lv.kind for lv in H.levels[-3:]] == ["diagonal-a", "decimated", "axial"]
    for lv in H.levels[1:]:
        same = [m for m in H.levels if m.grid == lv.grid and m.base_kind == lv.base_kind]
        if len(same) == 2 and lv.kind in ("diagonal-a", "axial-x"):
            a, b = same
            xa, ya = a.sites // L, a.sites % L
            xb, yb = b.sites // L, b.sites % L
            d = lambda u, v: np.minimum((u - v) % L, (v - u) % L)
            dist = d(xa[:, None], xb[None, :]) ** 2 + d(ya[:, None], yb[None, :]) ** 2
            within = d(xa[:, None], xa[None, :]) ** 2 + d(ya[:, None], ya[None, :]) ** 2
            np.fill_diagonal(within, 10 ** 9)
            assert dist.min() < within.min()  # the closest pairs are split
    K0, K = H0.coupling_schedule(0.4), H.coupling_schedule(0.4)
    for lv in H.levels:
        want = 0.4 if lv.kind == "decimated" else K0[lev0[lv.sites[0]]]
        assert K[lv.index] == want


def test_decimated_level_is_the_exact_conditional():
    """On the 4x4 torus (split scheme, coarsest 2x2): the realised q of the decimated level equals
    the exact p(s^dec | s^<dec) of the Ising model, from enumerating all 2**16 states, to the 2**-32
    threshold quantisation (relative 2**-32 / p per site); and so does the last (heat-bath) level."""
    beta = 0.55
    s = MultilevelSampler(4, beta, coarsest=2, scheme="split")
    H = s.hierarchy
    states = state_spins(4).reshape(-1, 16).astype(np.int64)
    sp = states.reshape(-1, 4, 4)
    lp = beta * (sp * (np.roll(sp, 1, 1) + np.roll(sp, 1, 2))).sum(axis=(1, 2))
    w = np.exp(lp - lp.max())
    lev = H.level_of_site.reshape(-1)

    def marginal(upto):  # p(s^{<=upto}) for every state, by summing the others out
        keys = states[:, lev <= upto]
        idx = (keys > 0).astype(np.int64) @ (1 << np.arange(keys.shape[1]))
        tot = np.bincount(idx, weights=w)
        return tot[idx] / w.sum()

    for lv_s, lv in zip(s.levels, H.levels[1:]):
        if lv.kind not in ("decimated", "axial"):
            continue
        exact = marginal(lv.index) / marginal(lv.index - 1)
        sm = np.ascontiguousarray(states.T.astype(np.int8))
        T, up, dn = lv_s.thresholds(sm, array_api_compat.numpy)
        bit = states[:, lv.sites].T > 0
        realised = np.exp(np.where(bit, up, dn).sum(axis=0))
        assert np.max(np.abs(realised / exact - 1)) < 1e-6, lv.describe()  # 2**-32 / p per site


def test_split_scheme_q_sums_to_one_and_is_z2_symmetric():
    for L, c in ((4, 2), (4, 4)):
        s = MultilevelSampler(L, 0.44, coarsest=c, scheme="split")
        lq = enumerate_q(s)
        assert abs(np.exp(lq).sum() - 1.0) < 1e-12
    s = MultilevelSampler(16, BETA_C, scheme="split")
    a = s.sample(100, seed=5)
    assert np.array_equal(s.log_prob(a.spins), a.log_q)
    assert np.array_equal(s.log_prob(-np.asarray(a.spins)), a.log_q)
    with pytest.raises(ValueError, match="scheme"):
        MultilevelSampler(16, BETA_C, scheme="checkerboard")
    with pytest.raises(ValueError, match="decimated"):
        MultilevelSampler(8, BETA_C, scheme="split", couplings=[0.2, 0.3, 0.3, BETA_C])


def test_hierarchy_rejects_bad_sizes():
    with pytest.raises(ValueError, match="size"):
        Hierarchy(12)
    with pytest.raises(ValueError, match="coarsest"):
        Hierarchy(16, 8)
    with pytest.raises(ValueError, match="coarsest"):
        Hierarchy(2, 4)


def test_maris_kadanoff_schedule():
    K = Hierarchy(16).coupling_schedule(0.3)
    assert K[-1] == 0.3
    for l in range(len(K) - 1):
        assert K[l] == pytest.approx(0.375 * math.log(math.cosh(4 * K[l + 1])), rel=1e-14)


def test_coarsest_level_is_the_enumerated_boltzmann_distribution():
    lev = CoarsestLevel(4, 0.3, -0.05)
    states = state_spins(4)
    lq = lev.log_prob(states)
    assert abs(np.exp(lq).sum() - 1.0) < 1e-12
    # the realised probabilities differ from the ideal ones by the 2**-32 quantisation only
    assert np.max(np.abs(np.exp(lq) - np.exp(lev.ideal_log_prob(states)))) < 1e-8
    words = np.random.default_rng(1).integers(0, 2**32, size=(2000, 16), dtype=np.uint64).astype(np.uint32)
    spins, lq_s = lev.sample(words)
    assert np.array_equal(lev.log_prob(spins), lq_s)


def enumerate_q(sampler):
    return sampler.log_prob(state_spins(sampler.size))


@pytest.mark.parametrize("couplings", [None, "random"])
def test_q_sums_to_one_over_all_configurations_at_L4(couplings):
    H = Hierarchy(4, 2)
    if couplings == "random":
        couplings = np.r_[np.random.default_rng(2).uniform(-0.5, 1.0, H.n_levels - 1), BETA_C]
    s = MultilevelSampler(4, BETA_C, coarsest=2, couplings=couplings, coarsest_couplings=(0.2, 0.1))
    lq = enumerate_q(s)
    assert abs(np.exp(lq).sum() - 1.0) < 1e-12
    assert np.all(np.isfinite(lq))


def test_sampling_follows_q_at_L4():
    """Chi-square of 40,000 draws against the enumerated q (a wrong conditional or site order fails)."""
    s = MultilevelSampler(4, BETA_C, coarsest=2, couplings=[0.3, 0.5, BETA_C])
    q = np.exp(enumerate_q(s))
    n = 40_000
    smp = s.sample(n, seed=11)
    counts = np.bincount(state_index(smp.spins), minlength=q.size)
    e = q * n
    big = e > 10
    chi2 = np.sum((counts[big] - e[big]) ** 2 / e[big])
    rest_o, rest_e = counts[~big].sum(), e[~big].sum()
    chi2 += (rest_o - rest_e) ** 2 / rest_e
    dof = big.sum()
    # 5 sigma of the chi-square distribution
    assert abs(chi2 - dof) < 5 * math.sqrt(2 * dof), (chi2, dof)


def test_log_q_of_a_sample_is_its_log_prob_and_batching_does_not_matter():
    s = MultilevelSampler(16, BETA_C)
    a = s.sample(50, seed=3)
    assert np.array_equal(s.log_prob(a.spins), a.log_q)
    b = s.sample(20, seed=3, first=30, batch=7)
    assert np.array_equal(np.asarray(b.spins), np.asarray(a.spins)[30:])
    assert np.array_equal(b.log_q, a.log_q[30:])
    assert np.array_equal(b.streams, np.arange(30, 50))
    c = s.sample(50, seed=4)
    assert not np.array_equal(np.asarray(c.spins), np.asarray(a.spins))


def test_z2_symmetry_of_q():
    s = MultilevelSampler(8, 0.44)
    smp = s.sample(200, seed=1)
    assert np.allclose(s.log_prob(-np.asarray(smp.spins)), smp.log_q, rtol=0, atol=1e-9)


def test_log_weight_is_minus_beta_h_minus_log_q():
    s = MultilevelSampler(8, 0.4)
    smp = s.sample(10, seed=2)
    sp = np.asarray(smp.spins).astype(np.int64)
    bonds = (sp * (np.roll(sp, 1, 1) + np.roll(sp, 1, 2))).sum(axis=(1, 2))
    assert np.allclose(smp.log_w, 0.4 * bonds - smp.log_q, rtol=0, atol=1e-9)
    assert np.allclose(s.log_weight(smp.spins), smp.log_w, rtol=0, atol=1e-9)


@pytest.mark.parametrize("L,beta", [(8, BETA_C), (8, 0.44), (16, BETA_C)])
def test_free_energy_and_reweighted_observables_against_exact_values(L, beta):
    """ln Z_hat within 3 sigma of Kaufman's; reweighted E (and <m^2> where exact) within 4 sigma."""
    n = 40_000 if L == 8 else 100_000
    smp = MultilevelSampler(L, beta).sample(n, seed=17)
    ex = kaufman_torus(beta, L)
    lz = log_partition_function(smp.log_w)
    assert abs(lz.mean - ex.ln_z * L * L) < 3 * lz.error, (lz, ex.ln_z * L * L)
    sp = np.asarray(smp.spins).astype(np.float64)
    e = -(sp * (np.roll(sp, 1, 1) + np.roll(sp, 1, 2))).sum(axis=(1, 2)) / (L * L)
    er = reweight(e, smp.log_w)
    assert abs(er.mean - ex.energy) < 4 * er.error, (er, ex.energy)
    if L <= 10:
        m2 = reweight(sp.mean(axis=(1, 2)) ** 2, smp.log_w)
        assert abs(m2.mean - magnetization_moments(beta, L).m2) < 4 * m2.error
    # the error bars are not inflated: ESS is sizeable here
    assert effective_sample_size(smp.log_w) > 0.01


def test_estimators_on_known_weights():
    lw = np.log(np.array([1.0, 1.0, 1.0, 1.0]))
    assert effective_sample_size(lw) == pytest.approx(1.0)
    assert effective_sample_size(np.log([1.0, 0.0 + 1e-300, 1e-300, 1e-300])) == pytest.approx(0.25)
    assert log_partition_function(np.log([1.0, 3.0])).mean == pytest.approx(math.log(2.0))
    assert reweight([1.0, 2.0], np.log([1.0, 3.0])).mean == pytest.approx(1.75)
    assert mode_dropping(np.log([2.0, 2.0]), math.log(4.0)).mean == pytest.approx(0.5)
    with pytest.raises(ValueError, match="finite"):
        effective_sample_size([0.0, np.inf])
    ch = independence_metropolis(np.zeros(100), seed=1)
    assert ch.acceptance == 1.0 and np.array_equal(ch.state, np.arange(100))
    ch = independence_metropolis(np.r_[10.0, np.zeros(99)], seed=1)
    assert ch.acceptance < 0.01


def test_independence_chain_is_exact_mcmc():
    """IMH over MLMC-HB proposals at L=8: <|m|> and E agree with the exact values."""
    from isingcore.measure.autocorrelation import gamma_method

    L, beta = 8, BETA_C
    smp = MultilevelSampler(L, beta).sample(30_000, seed=23)
    ch = independence_metropolis(smp.log_w, seed=23)
    sp = np.asarray(smp.spins).astype(np.float64)
    absm = np.abs(sp.mean(axis=(1, 2)))[ch.state]
    est = gamma_method(absm)
    assert abs(est.mean - magnetization_moments(beta, L).abs_m) < 4 * est.error
    assert 0.3 < ch.acceptance < 0.9


def test_sampler_argument_errors():
    with pytest.raises(ValueError, match="couplings"):
        MultilevelSampler(8, 0.4, couplings=[0.1, 0.2])
    with pytest.raises(ValueError, match="last level"):
        MultilevelSampler(8, 0.4, couplings=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="beta"):
        MultilevelSampler(8, -1.0)
    with pytest.raises(ValueError, match="size"):
        MultilevelSampler(10, 0.4)
    with pytest.raises(ValueError, match="n must"):
        MultilevelSampler(8, 0.4).sample(0, seed=1)


@pytest.mark.parametrize("backend", [b for b in __import__("backend_testing").BACKENDS if b != "array_api_strict"])
def test_backends_draw_the_same_bits(backend):
    """MLMC-HB on CuPy: the same configurations and log q as on NumPy (tabulated thresholds)."""
    from backend_testing import as_np

    ref = MultilevelSampler(16, BETA_C).sample(64, seed=8)
    got = MultilevelSampler(16, BETA_C, backend=backend).sample(64, seed=8)
    assert np.array_equal(as_np(got.spins), as_np(ref.spins))
    assert np.allclose(got.log_q, ref.log_q, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="backend"):
        MultilevelSampler(8, 0.4, backend="array_api_strict")


# ---- trained models: a hand-made ONNX conditional exercises the network path -------------------------------------

def _odd_network(path, *, level, grid, kind, weights, halo=1, mask_weight=0.0):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    w = np.zeros((1, 2, 3, 3), dtype=np.float32)
    w[0, 0] = weights
    w[0, 1] = mask_weight
    node = helper.make_node("Conv", ["embedded", "W"], ["logit"], kernel_shape=[3, 3])
    graph = helper.make_graph([node], "cond", [helper.make_tensor_value_info("embedded", TensorProto.FLOAT, ["B", 2, "H", "W"])],
                              [helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["B", 1, "h", "w"])],
                              initializer=[helper.make_tensor("W", TensorProto.FLOAT, w.shape, w.reshape(-1))])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    for k, v in {"isingcore.format": "multilevel-conditional-1", "isingcore.level": level, "isingcore.grid": grid,
                 "isingcore.kind": kind, "isingcore.halo": halo}.items():
        p = m.metadata_props.add()
        p.key, p.value = k, str(v)
    onnx.save(m, path)


@pytest.fixture
def learned_L4(tmp_path):
    """An L=4 model: level 1 (diagonal, grid 1) is a learned 3x3 conv with next-nearest terms."""
    wts = np.array([[0.31, -0.07, 0.29], [0.05, 0.0, -0.11], [0.33, 0.13, 0.27]], dtype=np.float32)
    _odd_network(str(tmp_path / "level01.onnx"), level=1, grid=1, kind="diagonal", weights=wts)
    write_manifest(str(tmp_path), name="test-L4", size=4, beta=BETA_C, coarsest=2, coarsest_couplings=(0.25, 0.05),
                   couplings=[0.25, 0.4, BETA_C], networks={1: "level01.onnx"}, training={"note": "hand-made"})
    return tmp_path


def test_learned_model_q_sums_to_one_and_sampling_is_consistent(learned_L4):
    s = MultilevelSampler(model=str(learned_L4))
    assert s.kind == "model:test-L4" and s.levels[0].network is not None
    lq = enumerate_q(s)
    assert abs(np.exp(lq).sum() - 1.0) < 1e-12
    hb = MultilevelSampler(4, BETA_C, coarsest=2, couplings=[0.25, 0.4, BETA_C], coarsest_couplings=(0.25, 0.05))
    assert np.max(np.abs(lq - enumerate_q(hb))) > 0.01  # the network really changes q
    smp = s.sample(300, seed=5)
    assert np.allclose(s.log_prob(smp.spins), smp.log_q, rtol=0, atol=1e-12)
    assert np.allclose(s.log_prob(-np.asarray(smp.spins)), smp.log_q, rtol=0, atol=1e-5)


def test_learned_model_validation(learned_L4, tmp_path_factory):
    man = json.loads((learned_L4 / "manifest.json").read_text())
    bad = tmp_path_factory.mktemp("bad")

    def write(m):
        (bad / "manifest.json").write_text(json.dumps(m))
        return str(bad)

    import shutil

    shutil.copy(learned_L4 / "level01.onnx", bad / "level01.onnx")
    with pytest.raises(MultilevelModelError, match="format"):
        load_model(write({**man, "format": "other"}))
    lv = [dict(x) for x in man["levels"]]
    lv[-1]["coupling"] = 0.3
    with pytest.raises(MultilevelModelError, match="last level"):
        load_model(write({**man, "levels": lv}))
    lv = [dict(x) for x in man["levels"]]
    lv[0]["network"] = "missing.onnx"
    with pytest.raises(MultilevelModelError, match="cannot be read"):
        load_model(write({**man, "levels": lv}))
    lv = [dict(x) for x in man["levels"]]
    lv[1]["network"] = "level01.onnx"  # metadata says level 1
    with pytest.raises(MultilevelModelError, match="level"):
        load_model(write({**man, "levels": lv}))
    _odd_network(str(bad / "even.onnx"), level=1, grid=1, kind="diagonal", weights=np.ones((3, 3)), mask_weight=0.5)
    lv = [dict(x) for x in man["levels"]]
    lv[0]["network"] = "even.onnx"
    with pytest.raises(MultilevelModelError, match="odd"):
        load_model(write({**man, "levels": lv}))
    with pytest.raises(MultilevelModelError, match="no such"):
        load_model("no-such-model")
    with pytest.raises(ValueError, match="size"):
        MultilevelSampler(8, model=str(learned_L4))


# ---- files and command line ---------------------------------------------------------------------------------------

def test_sample_command_writes_log_q_and_log_w_and_analyze_reweights(tmp_path, capsys):
    from isingcore.analysis import analyze_ensemble
    from isingcore.cli import main
    from isingcore.io import open_ensemble

    out = str(tmp_path / "ml.h5")
    assert main(["sample", "--algorithm", "multilevel", "--size", "8", "--configs", "3000", "--seed", "9",
                 "--out", out, "--progress", "off"]) == 0
    with open_ensemble(out) as ens:
        assert {"log_q", "log_w"} <= set(ens.observables)
        s = MultilevelSampler(8, BETA_C)
        spins = np.asarray(ens[:5])
        assert np.allclose(np.asarray(ens.observables["log_q"][:5]), s.log_prob(spins), rtol=0, atol=1e-12)
        assert ens.attrs["algorithm"] == "multilevel"
        res = analyze_ensemble(ens)
    imp = res["importance"]
    assert 0.3 < imp["ess"] < 0.9
    assert abs(imp["ln_z"]["mean"] - imp["ln_z_exact"]) < 4 * imp["ln_z"]["error"]
    # resume: extend to 4000 draws; the first 3000 are unchanged
    assert main(["sample", "--algorithm", "multilevel", "--size", "8", "--configs", "4000", "--seed", "9",
                 "--out", out, "--resume", "--progress", "off"]) == 0
    with open_ensemble(out) as ens2:
        assert len(ens2) == 4000
        assert np.array_equal(np.asarray(ens2[:5]), spins)
    capsys.readouterr()
    assert main(["sample", "--algorithm", "wolff", "--model", "x", "--out", str(tmp_path / "w.h5")]) == 2
    assert "--model" in capsys.readouterr().err
