"""Training and export of multilevel samplers (isingcore.multilevel.train): torch ln q = runtime ln q."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from isingcore.constants import BETA_C
from isingcore.multilevel import MultilevelSampler, load_model
from isingcore.multilevel.train import (
    MultilevelTorch,
    OnnxCheckError,
    build_onnx_level,
    check_onnx_level,
    export_model,
    model_name,
    train_stage,
    transfer,
)


def _randomise(model, seed=0, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for net in model.nets.values():
            for p in net.parameters():
                p.copy_(scale * torch.randn(p.shape, generator=g))
        for k in model.K.values():
            k.add_(0.05 * torch.randn((), generator=g, dtype=torch.float64))
        model.coarsest_K[1] = 0.03


def _as_int8(spins):
    return spins.detach().numpy().astype(np.int8)


@pytest.mark.parametrize("size", [8, 16])
def test_untrained_model_is_mlmc_hb(size):
    torch.manual_seed(0)
    m = MultilevelTorch(size, BETA_C)
    spins, logq = m.sample(64, generator=torch.Generator().manual_seed(1))
    ref = MultilevelSampler(size, BETA_C).log_prob(_as_int8(spins))
    assert np.max(np.abs(logq.detach().numpy() - ref)) < 1e-6
    # scoring reproduces the sampling pass
    assert torch.allclose(m.log_prob(spins), logq, atol=1e-12, rtol=0)


def test_trained_model_matches_runtime(tmp_path):
    torch.manual_seed(0)
    m = MultilevelTorch(8, 0.44)
    train_stage(m, steps=4, batch=32, seed=0, ess_every=2)
    _randomise(m, 1, 0.2)  # a few Adam steps barely leave the zero initialisation
    d = tmp_path / "m8"
    tr = export_model(m, str(d), name="m8", training={"steps_total": 4, "seed": 0}, ess_samples=500)
    assert 0 < tr["ess"] <= 1 and tr["onnx_max_abs_diff"] <= 1e-4
    spins, logq = m.sample(64, generator=torch.Generator().manual_seed(2))
    smp = MultilevelSampler(model=str(d))
    assert np.max(np.abs(logq.detach().numpy() - smp.log_prob(_as_int8(spins)))) <= 1e-4
    back = MultilevelTorch.from_directory(str(d))  # the exported model read back into torch
    assert torch.allclose(back.log_prob(spins), logq, atol=1e-4, rtol=0)
    # and the runtime's own samples score the same in torch
    out = smp.sample(32, seed=5)
    assert np.max(np.abs(m.log_prob(torch.from_numpy(out.spins.astype(np.float32))).detach().numpy() - out.log_q)) <= 1e-4


def test_transfer_and_export_at_16(tmp_path):
    torch.manual_seed(0)
    m8 = MultilevelTorch(8, BETA_C)
    _randomise(m8, 3)
    m16 = transfer(m8, 16)
    assert m16.transfer_map == {1: 1, 3: 1}
    sd = lambda net: {k: v.clone() for k, v in net.state_dict().items()}
    for k_new, k_old in ((1, 1), (3, 1)):
        for key, v in sd(m8.nets[str(k_old)]).items():
            assert torch.equal(m16.nets[str(k_new)].state_dict()[key], v)
        assert m16.K[str(k_new)].item() == m8.K[str(k_old)].item()
    assert torch.count_nonzero(m16.nets["2"].conv_out.weight) == 0  # no axial level at L = 8: fresh
    assert m16.K["2"].item() == pytest.approx(m16.hierarchy.coupling_schedule(BETA_C)[2])
    assert torch.equal(m16.coarsest_K, m8.coarsest_K)
    _randomise(m16, 4)
    m32 = transfer(m16, 32)
    assert m32.transfer_map == {1: 1, 2: 2, 3: 3, 5: 3, 4: 2}
    for k_new, k_old in m32.transfer_map.items():
        assert torch.equal(m32.nets[str(k_new)].conv_x.weight, m16.nets[str(k_old)].conv_x.weight)
        assert m32.K[str(k_new)].item() == m16.K[str(k_old)].item()
    # the 16 x 16 model with diagonal and axial learned levels through onnxruntime
    d = tmp_path / "m16"
    export_model(m16, str(d), name="m16", training={})
    spins, logq = m16.sample(32, generator=torch.Generator().manual_seed(6))
    got = MultilevelSampler(model=str(d)).log_prob(_as_int8(spins))
    assert np.max(np.abs(logq.detach().numpy() - got)) <= 1e-4


def test_exported_networks_are_odd_and_checked(tmp_path):
    import onnxruntime as ort

    torch.manual_seed(0)
    m = MultilevelTorch(16, 0.44)
    _randomise(m, 7, 0.5)
    rng = np.random.default_rng(0)
    for level in m.learned:
        onx = build_onnx_level(m, level)
        md = {p.key: p.value for p in onx.metadata_props}
        assert md["isingcore.format"] == "multilevel-conditional-1" and md["isingcore.halo"] == "3"
        assert md["isingcore.kind"] == m.hierarchy.levels[level].kind
        sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
        mask = (rng.random((3, 1, 10, 10)) < 0.6).astype(np.float32)
        x = np.where(rng.random((3, 1, 10, 10)) < 0.5, 1.0, -1.0).astype(np.float32) * mask
        a = sess.run(["logit"], {"embedded": np.concatenate([x, mask], 1)})[0]
        b = sess.run(["logit"], {"embedded": np.concatenate([-x, mask], 1)})[0]
        assert a.shape == (3, 1, 4, 4) and np.max(np.abs(a)) > 0.1
        assert np.array_equal(a, -b)
        with torch.no_grad():  # the torch model moved on: the check must refuse
            m.nets[str(level)].conv_out.weight.add_(1e-2)
        with pytest.raises(OnnxCheckError):
            check_onnx_level(onx, m, level)


def test_heatbath_only_training(tmp_path):
    torch.manual_seed(0)
    m = MultilevelTorch(16, BETA_C, networks=False)
    before = m.couplings().copy()
    st = train_stage(m, steps=3, batch=32, objective="chi2", params=m.coupling_parameters(), ess_every=1)
    assert len(st["history"]) == 3 and not np.array_equal(before, m.couplings())
    d = tmp_path / model_name("mlmchb", BETA_C, 16)
    export_model(m, str(d), name=d.name, training={})
    model = load_model(str(d))
    assert model.networks == {} and d.name == "mlmchb-kc-L16"
    spins, logq = m.sample(32, generator=torch.Generator().manual_seed(8))
    got = MultilevelSampler(model=str(d)).log_prob(_as_int8(spins))
    assert np.max(np.abs(logq.detach().numpy() - got)) < 1e-6
    assert model_name("rigcs", 0.44, 64) == "rigcs-b044-L64"


def test_split_scheme_model_matches_runtime_and_converts_from_seed001(tmp_path):
    """A 'split' model: torch log q equals the runtime's after ONNX export (the decimated level is exact
    and has no network), and a seed-001 model converts into it level by level (same grid, same kind)."""
    torch.manual_seed(0)
    m16 = MultilevelTorch(16, BETA_C)
    _randomise(m16, 7)
    sp = transfer(m16, 16, "split")
    kinds = {lv.index: lv.kind for lv in sp.hierarchy.levels}
    assert sp.learned == [1, 2, 3, 4, 5] and sp.exact == [6, 7] and kinds[6] == "decimated"
    assert sp.transfer_map == {1: 1, 2: 1, 3: 2, 4: 2, 5: 3}
    for k_new, k_old in sp.transfer_map.items():
        assert torch.equal(sp.nets[str(k_new)].conv_x.weight, m16.nets[str(k_old)].conv_x.weight)
    _randomise(sp, 8, 0.2)
    d = tmp_path / "split16"
    tr = export_model(sp, str(d), name="split16", training={}, ess_samples=200)
    assert 0 < tr["ess"] <= 1
    smp = MultilevelSampler(model=str(d))
    assert smp.hierarchy.scheme == "split" and sorted(smp.model.networks) == [1, 2, 3, 4, 5]
    spins, logq = sp.sample(32, generator=torch.Generator().manual_seed(9))
    assert np.max(np.abs(logq.detach().numpy() - smp.log_prob(_as_int8(spins)))) <= 1e-4
    back = MultilevelTorch.from_directory(str(d))
    assert back.scheme == "split" and torch.allclose(back.log_prob(spins), logq, atol=1e-4, rtol=0)
    # transfer to 32 keeps the scheme; the new finest diagonal-a level starts from the old one
    m32 = transfer(sp, 32)
    assert m32.scheme == "split" and m32.transfer_map[9] == 5
    with pytest.raises(ValueError, match="larger lattice or another scheme"):
        transfer(sp, 16)
