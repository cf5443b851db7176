"""The command line: sample -> analyze, --resume after SIGKILL equals an uninterrupted run, info, errors."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from isingcore.io import open_ensemble

CLI = [sys.executable, "-m", "isingcore"]


def run(*args, check=True, **kw):
    p = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=600, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"isingcore {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def test_sample_then_analyze_json(tmp_path):
    out = tmp_path / "e.h5"
    run("sample", "--size", 8, "--beta", "critical", "--algorithm", "heatbath", "--configs", 400, "--spacing", 2,
        "--thermalize", 100, "--seed", 3, "--chains", 2, "--out", out)
    with open_ensemble(str(out)) as ens:
        assert len(ens) == 800 and ens[0].shape == (8, 8) and ens[0].dtype == np.int8
        assert ens.attrs["algorithm"] == "heatbath" and ens.attrs["Lx"] == 8
    res = json.loads(run("analyze", out, "--json").stdout)
    assert res["size"] == 8 and res["n_configs"] == 800 and res["beta"] == pytest.approx(0.44068679350977151)
    obs = res["observables"]
    for key in ("energy", "abs_m", "m2", "m4", "binder", "susceptibility", "specific_heat"):
        assert {"mean", "error", "tau_int", "exact"} <= set(obs[key]), key
        assert obs[key]["exact"] is not None, key  # L = 8: every one of these is known exactly
        assert abs(obs[key]["mean"] - obs[key]["exact"]) < 5 * obs[key]["error"], key
    table = run("analyze", out).stdout
    assert "energy" in table and "tau_int" in table and "exact" in table


def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path):
    args = ["sample", "--size", 16, "--beta", 0.4, "--algorithm", "metropolis", "--configs", 3000, "--spacing", 3,
            "--thermalize", 50, "--seed", 11, "--chains", 2]
    full = tmp_path / "full.h5"
    cut = tmp_path / "cut.h5"
    short = [a if a != 3000 else 400 for a in args]
    run(*short, "--out", full)
    proc = subprocess.Popen([*CLI, *map(str, short), "--out", str(cut)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # kill it once a part of the configurations is on disk
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.2)
        try:
            with open_ensemble(str(cut)) as e:
                if len(e) >= 100:
                    break
        except Exception:  # noqa: BLE001 - file not there yet or being created
            continue
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with open_ensemble(str(cut)) as e:
        n_cut = len(e)
    assert 0 < n_cut < 800, "the writer was not interrupted mid-run"
    run(*short, "--out", cut, "--resume")
    a, b = open_ensemble(str(full)), open_ensemble(str(cut))
    assert len(a) == len(b) == 800
    order_a = np.lexsort((a.step, a.chain))
    order_b = np.lexsort((b.step, b.chain))
    np.testing.assert_array_equal(np.asarray(a.chain)[order_a], np.asarray(b.chain)[order_b])
    np.testing.assert_array_equal(np.asarray(a.step)[order_a], np.asarray(b.step)[order_b])
    np.testing.assert_array_equal(a[list(order_a)], b[list(order_b)])
    np.testing.assert_array_equal(np.asarray(a.observables["energy"])[order_a], np.asarray(b.observables["energy"])[order_b])


def test_resume_with_other_parameters_is_refused(tmp_path):
    out = tmp_path / "e.h5"
    run("sample", "--size", 8, "--configs", 10, "--thermalize", 10, "--out", out)
    p = run("sample", "--size", 8, "--configs", 10, "--thermalize", 10, "--out", out, "--resume", "--seed", 5, check=False)
    assert p.returncode != 0 and "seed" in p.stderr
    p = run("sample", "--size", 8, "--configs", 10, "--out", out, check=False)
    assert p.returncode != 0 and "--resume" in p.stderr


@pytest.mark.parametrize("args,needle", [
    (["sample", "--size", 7, "--algorithm", "metropolis"], "even"),
    (["sample", "--size", 7, "--algorithm", "swendsen-wang", "--h", "0.5"], "h"),
    (["sample", "--beta", "-1"], "beta"),
    (["sample", "--beta", "hot"], "beta"),
    (["sample", "--algorithm", "glauber"], "algorithm"),
    (["sample", "--backend", "torch"], "backend"),
    (["sample", "--backend", "cupy"], "cupy"),
    (["sample", "--configs", "0"], "configs"),
])
def test_bad_arguments_are_named(tmp_path, args, needle):
    p = run(*args, "--out", tmp_path / "x.h5", check=False)
    assert p.returncode != 0
    assert needle in p.stderr
    assert not (tmp_path / "x.h5").exists()


def test_analyze_rejects_non_ensembles(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not an hdf5 file at all" * 10)
    p = run("analyze", bad, check=False)
    assert p.returncode == 2 and "bad.h5" in p.stderr
    p = run("analyze", tmp_path / "missing.h5", check=False)
    assert p.returncode == 2 and "no such file" in p.stderr


def test_info_reports_backends_and_usable_providers():
    out = run("info").stdout
    assert "isingcore" in out and "numpy" in out
    assert "onnxruntime providers actually usable: CPUExecutionProvider" in out


def test_run_main_job_small(tmp_path):
    """``isingcore run`` is the upscaling pipeline; here on a shipped minimal model and tiny sizes."""
    from isingcore.io import open_ensemble

    p = run("run", "--model", "minimal-b2-k3", "--seed-size", 8, "--stages", 2, "--configs", 3, "--refine", 2,
            "--out", tmp_path / "r.h5", "--png", tmp_path / "r.png", "--json", cwd=tmp_path)
    stages = json.loads(p.stdout)
    assert [s["L"] for s in stages] == [8, 16, 32]
    assert all(0.5 < s["c10"] < 0.9 for s in stages)
    with open_ensemble(tmp_path / "r.h5") as ens:
        assert len(ens) == 3 and ens.Lx == 32 and ens.attrs["extra"]["model"] == "minimal-b2-k3"
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_run_defaults_are_the_upscaling_job():
    from isingcore.cli import build_parser

    a = build_parser().parse_args(["run"])
    assert (a.model, a.seed_size, a.stages, a.refine, a.configs) == ("ecmk-b3-k9", 512, 3, 25, 1)
    assert a.out.endswith(".h5") and a.png.endswith(".png")


def test_models_on_an_empty_registry(tmp_path):
    env = {**os.environ, "ISINGCORE_MODELS_DIR": str(tmp_path)}
    p = run("models", env=env)
    assert "no upscaling models" in p.stdout and str(tmp_path) in p.stdout
    assert json.loads(run("models", "--json", env=env).stdout) == []
    assert run("models").returncode == 0  # the shipped registry, whatever it holds
    p = run("models", "--dir", tmp_path / "missing", check=False)
    assert p.returncode == 2 and "no such directory" in p.stderr


def test_upscale_errors_are_named(tmp_path):
    env = {**os.environ, "ISINGCORE_MODELS_DIR": str(tmp_path)}
    p = run("upscale", "--model", "no-such-model", "--out", tmp_path / "x.h5", check=False, env=env)
    assert p.returncode == 2 and "no-such-model" in p.stderr and "shipped models: none" in p.stderr
    p = run("upscale", "--model", "m", "--stages", "0", "--out", tmp_path / "x.h5", check=False)
    assert p.returncode != 0 and "--stages" in p.stderr
    assert not (tmp_path / "x.h5").exists()


def test_analyze_json_has_diagonal_correlation_and_mcrg(tmp_path):
    out = tmp_path / "w.h5"
    run("sample", "--size", 32, "--algorithm", "wolff", "--configs", 300, "--chains", 4, "--seed", 5, "--out", out)
    res = json.loads(run("analyze", out, "--json", "--mcrg").stdout)
    cd = res["correlation_diagonal"]
    assert cd["n"] == list(range(1, 17)) and len(cd["mean"]) == len(cd["error"]) == 16
    # at K_c the nearest diagonal correlation is 2/pi plus a small finite-size excess at L = 32
    assert cd["exact_infinite_lattice"][0] == pytest.approx(2 / np.pi)
    assert abs(cd["mean"][0] - 2 / np.pi - 0.009) < 5 * cd["error"][0] + 0.005
    assert all(a > b for a, b in zip(cd["mean"][:8], cd["mean"][1:8]))  # decays (far from the periodic images)
    mc = res["mcrg"]
    assert abs(mc["y_h"]["mean"] - 15 / 8) < 5 * mc["y_h"]["error"] + 0.01
    assert abs(mc["y_t"]["mean"] - 1) < 5 * mc["y_t"]["error"] + 0.05
    p = run("analyze", out, "--mcrg")
    assert "MCRG" in p.stdout and "<s(0,0) s(n,n)>" in p.stdout
