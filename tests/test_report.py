"""isingcore report: renders, and flags an ensemble that is not what it claims to be."""

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import isingcore  # noqa: E402
from isingcore import io as iio  # noqa: E402
from isingcore.report import make_report  # noqa: E402


def write_ensemble(path, *, beta_sampled, beta_claimed, L=16, n=150, chains=8, seed=1):
    sim = isingcore.Simulation(size=L, beta=beta_sampled, algorithm="wolff", seed=seed, replicas=chains)
    sim.sweep(60)
    attrs = dict(algorithm="wolff", beta=beta_claimed, J=1.0, h=0.0, Lx=L, Ly=L, seed=seed, thermalization=60,
                 spacing=4, backend="numpy")
    names = ["energy", "magnetization", "c10x", "c10y", "c11"]
    with iio.EnsembleWriter.create(path, attrs, names, overwrite=True) as w:
        for _ in range(n // chains):
            sim.sweep(4)
            obs = {k: np.asarray(v) for k, v in sim.measure().items() if k in names}
            w.append(sim.spins, obs, chain=np.arange(chains, dtype=np.int32), step=sim.steps.copy())
    return str(path)


@pytest.fixture(scope="module")
def ensembles(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    good = write_ensemble(d / "good.h5", beta_sampled=isingcore.BETA_C, beta_claimed=isingcore.BETA_C)
    ref = write_ensemble(d / "ref.h5", beta_sampled=isingcore.BETA_C, beta_claimed=isingcore.BETA_C, seed=2)
    wrong = write_ensemble(d / "wrong.h5", beta_sampled=0.42, beta_claimed=isingcore.BETA_C, seed=3)
    return d, good, ref, wrong


def test_report_renders_and_passes_a_good_ensemble(ensembles):
    d, good, ref, _ = ensembles
    out = d / "good_report"
    res = make_report(good, str(out), reference=ref)
    assert res["n_flagged"] == 0
    for f in res["files"]:
        assert (out / f).stat().st_size > 200, f
    html = (out / "report.html").read_text()
    assert "<table>" in html and "energy" in html and "configuration.png" in html


def test_report_flags_an_ensemble_sampled_off_criticality(ensembles):
    d, _, ref, wrong = ensembles
    res = make_report(wrong, str(d / "wrong_report"), reference=ref)
    assert res["n_flagged"] >= 1
    energy = next(r for r in res["rows"] if r["name"] == "energy")
    assert abs(energy["z_exact"]) > 3 and abs(energy["z_ref"]) > 3
    assert "#f4b4b4" in (d / "wrong_report" / "report.html").read_text()  # red cell


def test_report_cli_and_bad_input(ensembles, tmp_path):
    d, good, _, _ = ensembles
    run = lambda *a: subprocess.run([sys.executable, "-m", "isingcore", "report", *map(str, a)],  # noqa: E731
                                    capture_output=True, text=True)
    p = run(good, "--out", tmp_path / "r")
    assert p.returncode == 0 and (tmp_path / "r" / "report.md").exists()
    p = run(tmp_path / "missing.h5")
    assert p.returncode == 2 and "no such ensemble file" in p.stderr
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5" * 20)
    p = run(bad)
    assert p.returncode == 2 and "bad.h5" in p.stderr


def test_report_on_independent_configurations_one_per_chain(tmp_path):
    """Upscaled files store each configuration as its own chain: analysed as one series of independent draws."""
    from isingcore.analysis import analyze_ensemble

    sim = isingcore.Simulation(size=32, algorithm="wolff", seed=4, replicas=24)
    sim.sweep(40)
    attrs = dict(algorithm="irg", beta=isingcore.BETA_C, J=1.0, h=0.0, Lx=32, Ly=32, seed=4, thermalization=40,
                 spacing=0, backend="numpy")
    path = str(tmp_path / "indep.h5")
    with iio.EnsembleWriter.create(path, attrs, ["energy", "magnetization"], overwrite=True) as w:
        for n in range(24):
            w.append(sim.spins[n:n + 1], None, chain=n, step=1)
    res = analyze_ensemble(path, mcrg=True)
    assert res["n_chains"] == 1 and res["n_configs"] == 24
    assert abs(res["observables"]["energy"]["tau_int"] - 0.5) < 0.3
    assert len(res["correlation_diagonal"]["n"]) == 16 and "y_h" in res["mcrg"]
    out = make_report(path, str(tmp_path / "rep"))
    assert (tmp_path / "rep" / "correlation.png").exists() and out["n_flagged"] == 0


def test_report_of_a_single_configuration(tmp_path):
    sim = isingcore.Simulation(size=16, algorithm="wolff", seed=1)
    sim.sweep(20)
    attrs = dict(algorithm="irg", beta=isingcore.BETA_C, J=1.0, h=0.0, Lx=16, Ly=16, seed=1, thermalization=20,
                 spacing=0, backend="numpy")
    path = str(tmp_path / "one.h5")
    with iio.EnsembleWriter.create(path, attrs, ["energy", "magnetization"], overwrite=True) as w:
        w.append(sim.spins, None, chain=0, step=1)
    out = make_report(path, str(tmp_path / "rep1"))
    assert "configuration.png" in out["files"]
    assert "energy" in (tmp_path / "rep1" / "report.md").read_text()
