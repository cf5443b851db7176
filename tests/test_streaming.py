"""Streaming analysis of one giant configuration (isingcore.measure.streaming) against the in-memory estimators."""

from __future__ import annotations

import math

import numpy as np
import pytest

from isingcore import giant
from isingcore.io import _energy_magnetization
from isingcore.measure import streaming as S
from isingcore.measure.correlations import correlation_along_axes, structure_factor
from isingcore.measure.observables import measure


@pytest.fixture(scope="module")
def critical():
    """A 96^2 Wolff configuration at K_c and a 40 x 36 random one."""
    from isingcore import Simulation
    from isingcore.constants import BETA_C

    sim = Simulation(size=96, beta=BETA_C, algorithm="wolff", replicas=1, seed=4)
    sim.sweep(60)
    return np.ascontiguousarray(np.asarray(sim.spins)[0])


@pytest.mark.parametrize("tile", [12, 32, 96, 200])
def test_observables_equal_in_memory_exactly(critical, tile):
    s = critical
    o = S.lattice_observables(s, tile=tile)
    e, m = _energy_magnetization(s[None])
    ref = measure(s)
    assert o["energy"].mean == pytest.approx(float(e[0]), abs=1e-15)
    assert o["magnetization"].mean == pytest.approx(float(m[0]), abs=1e-15)
    for k in ("c10x", "c10y", "c11"):
        assert o[k].mean == pytest.approx(float(ref[k]), abs=1e-15)
    assert o["energy"].n_tiles == math.ceil(96 / min(tile, 96)) ** 2
    if o["energy"].n_tiles > 1:  # the error is the standard error of the tile means (equal tiles here)
        T = min(tile, 96)
        per = [-(s[a:a + T, b:b + T] * np.roll(s, -1, 0)[a:a + T, b:b + T]
                 + s[a:a + T, b:b + T] * np.roll(s, -1, 1)[a:a + T, b:b + T]).mean()
               for a in range(0, 96, T) for b in range(0, 96, T)]
        if 96 % T == 0:
            assert o["energy"].error == pytest.approx(np.std(per, ddof=1) / math.sqrt(len(per)), rel=1e-12)


def test_uneven_tiles_and_rectangles():
    s = np.random.default_rng(2).choice(np.array([-1, 1], np.int8), size=(41, 30))
    o = S.lattice_observables(s, tile=7)
    e, m = _energy_magnetization(s[None])
    assert o["energy"].mean == pytest.approx(float(e[0]), abs=1e-15)
    assert o["magnetization"].mean == pytest.approx(float(m[0]), abs=1e-15)
    g = S.axis_correlation(s, 15, band=9)
    np.testing.assert_allclose(g.mean, np.asarray(correlation_along_axes(s, 15)), atol=1e-15)


@pytest.mark.parametrize("band", [5, 24, 96])
def test_axis_correlation_equals_full_fft(critical, band):
    s = critical
    g = S.axis_correlation(s, 48, band=band)
    np.testing.assert_allclose(g.mean, np.asarray(correlation_along_axes(s, 48)), atol=1e-15)
    np.testing.assert_allclose(g.x, np.asarray(correlation_along_axes(s, 48, axis="x")), atol=1e-15)
    assert g.mean[0] == 1.0
    if band < 96:
        assert g.n_bands == math.ceil(96 / band) and np.all(np.isfinite(g.error[1:])) and np.all(g.error[1:] > 0)
    with pytest.raises(ValueError, match="r_max"):
        S.axis_correlation(s, 49)


def test_structure_factor_tiles(critical):
    s = critical
    whole = S.structure_factor_tiles(s, 96)
    np.testing.assert_allclose(whole.mean, np.asarray(structure_factor(s)), rtol=1e-12, atol=1e-9)
    t = S.structure_factor_tiles(s, 32)
    per = [np.abs(np.fft.fft2(s[a:a + 32, b:b + 32].astype(float))) ** 2 / 1024 for a in (0, 32, 64) for b in (0, 32, 64)]
    np.testing.assert_allclose(t.mean, np.mean(per, axis=0), rtol=1e-10)
    np.testing.assert_allclose(t.error, np.std(per, axis=0, ddof=1) / 3, rtol=1e-6, atol=1e-9)
    assert S.structure_factor_tiles(s, 32, max_tiles=4).n_tiles == 4
    with pytest.raises(ValueError, match="tile"):
        S.structure_factor_tiles(s, 97)


def test_from_a_giant_file_and_report(critical, tmp_path):
    pytest.importorskip("matplotlib")
    from isingcore.report_giant import giant_report

    path = str(tmp_path / "g.h5")
    giant.write_giant(path, critical, tile=32, attrs={"model": "test", "seed_size": 1, "stages": 0})
    with giant.open_giant(path) as lat:
        o = S.lattice_observables(lat)
        assert o["tile"] == 32 and o["energy"].n_tiles == 9
        e, _ = _energy_magnetization(critical[None])
        assert o["energy"].mean == pytest.approx(float(e[0]), abs=1e-15)
    res = giant_report(path, str(tmp_path / "rep"), r_max=40, sk_tile=32)
    for f in ("giant_configuration.png", "giant_correlation.png", "giant_structure_factor.png", "giant_report.md",
              "giant_analysis.json"):
        assert (tmp_path / "rep" / f).stat().st_size > 0
    assert res["G_selected"][0]["r"] == 1 and len(res["G"]["mean"]) == 41


def test_diagonal_correlation_from_sampled_rows(critical, tmp_path):
    s = critical
    from isingcore.measure.correlations import correlation_along_diagonals

    ref = np.asarray(correlation_along_diagonals(s, 48))
    every = S.diagonal_correlation_sampled(s, [0, 1, 7, 48], rows=None)
    np.testing.assert_allclose(every.mean, ref[[0, 1, 7, 48]], atol=1e-15)
    assert np.all(every.error == 0) and every.rows == 96
    # sampled rows: the mean over the chosen rows, error = finite-population standard error over them
    d = S.diagonal_correlation_sampled(s, [1, 7], rows=24, seed=5)
    xs = np.sort(np.random.default_rng(5).choice(96, size=24, replace=False))
    per = np.array([[0.5 * (np.mean(s[x] * np.roll(s[(x + n) % 96], -n)) + np.mean(s[x] * np.roll(s[(x + n) % 96], n)))
                     for x in xs] for n in (1, 7)])
    np.testing.assert_allclose(d.mean, per.mean(axis=1), atol=1e-14)
    np.testing.assert_allclose(d.error, per.std(axis=1, ddof=1) / math.sqrt(24) * math.sqrt(1 - 24 / 96), rtol=1e-12)
    assert np.all(np.abs(d.mean - ref[[1, 7]]) < 5 * d.error)
    path = str(tmp_path / "g.h5")
    giant.write_giant(path, s, tile=32)
    with giant.open_giant(path) as lat:  # the same rows read lazily from the file
        np.testing.assert_array_equal(S.diagonal_correlation_sampled(lat, [1, 7], rows=24, seed=5).mean, d.mean)
    with pytest.raises(ValueError, match="n_values"):
        S.diagonal_correlation_sampled(s, [49])
    with pytest.raises(ValueError, match="rows"):
        S.diagonal_correlation_sampled(s, [1], rows=1)
