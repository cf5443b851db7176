"""The shipped multilevel models: they load, their q is normalised, and they are unbiased."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from isingcore.exact import kaufman_torus
from isingcore.multilevel import MultilevelSampler, list_models, load_model, log_partition_function, reweight
from isingcore.multilevel.coarsest import state_spins
from isingcore.multilevel.models import write_manifest

SHIPPED = list_models()
NAMES = [m["name"] for m in SHIPPED]


def test_shipped_models_are_usable():
    names = {m["name"] for m in SHIPPED}
    for family in ("rigcs", "mlmchb"):  # the package data must carry them (or these tests would pass vacuously)
        for tag in ("kc", "b044"):
            assert {f"{family}-{tag}-L{L}" for L in (8, 16, 32, 64)} <= names
        assert {f"rigcs-split-{tag}-L{L}" for L in (16, 32, 64)} <= names
    for m in SHIPPED:
        assert "error" not in m, m
        model = load_model(m["name"])
        card = model.path + "/README.md"
        with open(card) as fh:
            assert model.name in fh.read()


@pytest.mark.parametrize("name", NAMES)
def test_shipped_model_draws_match_their_log_prob(name):
    s = MultilevelSampler(model=name)
    n = 8 if s.size >= 64 else 32
    d = s.sample(n, seed=1)
    assert np.allclose(s.log_prob(d.spins), d.log_q, rtol=0, atol=1e-9)
    assert np.allclose(s.log_prob(-np.asarray(d.spins)), d.log_q, rtol=0, atol=1e-4)  # Z2


def _learned(name_prefix):
    return [m for m in SHIPPED if m["name"].startswith(name_prefix) and m.get("learned_levels")]


@pytest.mark.parametrize("scheme,kind", [("seed001", "diagonal"), ("split", "diagonal-a")])
def test_a_trained_conditional_gives_a_normalised_q_at_L4(tmp_path, scheme, kind):
    """A trained level network (grid 1) transplanted into an L=4 hierarchy: sum_s q(s) = 1."""
    import shutil

    learned = [m for m in _learned("rigcs-") if load_model(m["name"]).scheme == scheme]
    assert learned, f"no learned {scheme} model shipped"
    m = load_model(min(learned, key=lambda m: m["size"])["name"])
    man = m.manifest
    entry = next(e for e in man["levels"] if e["network"] and e["grid"] == 1 and e["kind"] == kind)
    shutil.copy(f"{m.path}/{entry['network']}", tmp_path / "level01.onnx")
    import onnx

    net = onnx.load(str(tmp_path / "level01.onnx"))  # the metadata names the level it now plays
    for p in net.metadata_props:
        if p.key == "isingcore.level":
            p.value = "1"
    onnx.save(net, str(tmp_path / "level01.onnx"))
    couplings = [0.3, entry["coupling"], m.beta] + ([m.beta] if scheme == "split" else [])
    write_manifest(str(tmp_path), name="transplant-L4", size=4, beta=m.beta, coarsest=2,
                   coarsest_couplings=m.coarsest_couplings, couplings=couplings,
                   networks={1: "level01.onnx"}, scheme=scheme)
    s = MultilevelSampler(model=str(tmp_path))
    lq = s.log_prob(state_spins(4))
    assert abs(np.exp(lq).sum() - 1.0) < 1e-12
    d = s.sample(200, seed=3)
    assert np.array_equal(s.log_prob(d.spins), d.log_q)


@pytest.mark.parametrize("name", [m["name"] for m in SHIPPED
                                  if m["size"] == 8 or (m["size"] == 16 and m["name"].startswith("rigcs-split"))])
def test_small_shipped_models_are_unbiased(name):
    """ln Z_hat within 3 sigma of Kaufman and reweighted E within 4 sigma at L = 8 (and L = 16 for the
    split-scheme models, whose L = 16 ESS of 0.8 makes 20,000 draws a sharp test)."""
    s = MultilevelSampler(model=name)
    d = s.sample(20_000, seed=29)
    L = s.size
    ex = kaufman_torus(s.beta, L)
    lz = log_partition_function(d.log_w)
    assert abs(lz.mean - ex.ln_z * L * L) < 3 * lz.error
    sp = np.asarray(d.spins).astype(np.float64)
    e = reweight(-(sp * (np.roll(sp, 1, 1) + np.roll(sp, 1, 2))).sum(axis=(1, 2)) / L**2, d.log_w)
    assert abs(e.mean - ex.energy) < 4 * e.error
    ess = json.loads(json.dumps(load_model(name).summary()))["ess"]
    if ess is not None:
        # the card's ESS is reproduced (independent draws; 5 sigma of a crude binomial-like spread)
        from isingcore.multilevel import effective_sample_size

        assert abs(effective_sample_size(d.log_w) - ess) < max(0.05, 5 * math.sqrt(ess / 20_000))
