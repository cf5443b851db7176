"""Tests of isingcore.io: bit packing, the HDF5 ensemble format, the crash-safe writer, the reader.

The crash tests run real writer processes and kill them with SIGKILL at random moments
(``ISINGCORE_IO_CRASH_SEED`` picks the moments; the seed is printed on failure).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from isingcore import io as iio
from isingcore.io import (
    ChainState,
    Ensemble,
    EnsembleBusyError,
    EnsembleFormatError,
    EnsembleWriter,
    join_ensembles,
    open_ensemble,
    pack_spins,
    unpack_spins,
)

posix_only = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")


def attrs_for(Lx, Ly, **kw):
    a = dict(algorithm="metropolis", beta=0.44068679350977151, J=1.0, h=0.0, Lx=Lx, Ly=Ly, seed=7,
             thermalization=100, spacing=3, backend="numpy")
    a.update(kw)
    return a


def random_spins(rng, shape):
    return rng.choice(np.array([-1, 1], dtype=np.int8), size=shape)


def brute_energy_magnetization(s, J, h):
    """Loop-based reference for one configuration (periodic, each bond once), per site."""
    Lx, Ly = s.shape
    E = 0.0
    for x in range(Lx):
        for y in range(Ly):
            E -= J * s[x, y] * (s[(x + 1) % Lx, y] + s[x, (y + 1) % Ly])
            E -= h * s[x, y]
    return E / (Lx * Ly), s.sum() / (Lx * Ly)


# ---------------------------------------------------------------------------------------------
# bit packing
# ---------------------------------------------------------------------------------------------


def test_pack_known_bits():
    # first spin in the most significant bit; bit 1 = +1; padding bits are zero
    s = np.array([[1, -1, -1, -1, -1, -1, -1, 1, 1, -1, 1]], dtype=np.int8)
    p = pack_spins(s)
    assert p.dtype == np.uint8 and p.shape == (1, 2)
    assert p.tolist() == [[0b10000001, 0b10100000]]
    assert np.array_equal(unpack_spins(p, 11), s)


@pytest.mark.parametrize("Ly", [1, 3, 7, 8, 9, 13, 16, 63, 64, 65, 130])
def test_pack_unpack_round_trip(Ly):
    rng = np.random.default_rng(Ly)
    s = random_spins(rng, (2, 3, 5, Ly))
    p = pack_spins(s)
    assert p.shape == (2, 3, 5, -(-Ly // 8)) and p.dtype == np.uint8
    assert np.array_equal(p, np.packbits(s > 0, axis=-1, bitorder="big"))
    u = unpack_spins(p, Ly)
    assert u.dtype == np.int8 and u.shape == s.shape
    assert np.array_equal(u, s)


@given(st.integers(1, 6), st.integers(1, 40), st.integers(0, 2**32 - 1))
def test_pack_unpack_hypothesis(Lx, Ly, seed):
    s = random_spins(np.random.default_rng(seed), (Lx, Ly))
    assert np.array_equal(unpack_spins(pack_spins(s), Ly), s)


def test_unpack_ignores_padding_bits():
    s = np.array([[1, -1, 1]], dtype=np.int8)
    p = pack_spins(s)
    p_dirty = p | np.uint8(0b00011111)  # set all 5 padding bits
    assert np.array_equal(unpack_spins(p_dirty, 3), s)


def test_pack_unpack_errors():
    with pytest.raises(ValueError, match=r"\+1 and -1"):
        pack_spins(np.array([[1, 0, -1]], dtype=np.int8))
    with pytest.raises(ValueError, match="uint8"):
        unpack_spins(np.zeros((2, 1), dtype=np.int8), 8)
    with pytest.raises(ValueError, match=r"ceil\(Ly/8\) = 2"):
        unpack_spins(np.zeros((2, 1), dtype=np.uint8), 9)
    with pytest.raises(ValueError, match="Ly"):
        unpack_spins(np.zeros((2, 1), dtype=np.uint8), 0)


def test_pack_accepts_array_api_strict():
    xps = pytest.importorskip("array_api_strict")
    s = random_spins(np.random.default_rng(3), (4, 10))
    assert np.array_equal(pack_spins(xps.asarray(s)), pack_spins(s))


def test_energy_magnetization_definitions():
    rng = np.random.default_rng(0)
    for Lx, Ly, J, h in [(4, 4, 1.0, 0.0), (3, 5, 0.7, 0.3), (2, 6, -1.0, 0.5), (1, 3, 1.0, -0.2)]:
        s = random_spins(rng, (3, Lx, Ly))
        e, m = iio._energy_magnetization(s, J, h)
        for i in range(3):
            e_ref, m_ref = brute_energy_magnetization(s[i].astype(int), J, h)
            assert e[i] == pytest.approx(e_ref, abs=1e-14) and m[i] == pytest.approx(m_ref, abs=1e-15)
    up = np.ones((1, 8, 8), dtype=np.int8)
    assert iio._energy_magnetization(up, 1.0, 0.5)[0][0] == pytest.approx(-2.5)
    checker = (1 - 2 * ((np.arange(8)[:, None] + np.arange(8)) % 2)).astype(np.int8)[None]
    e, m = iio._energy_magnetization(checker)
    assert e[0] == pytest.approx(2.0) and m[0] == 0.0


# ---------------------------------------------------------------------------------------------
# writer and reader round trip
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("Lx,Ly", [(1, 1), (3, 5), (8, 8), (16, 17), (7, 64), (32, 65)])
def test_round_trip(tmp_path, Lx, Ly):
    rng = np.random.default_rng(Lx * 1000 + Ly)
    n = 23
    S = random_spins(rng, (n, Lx, Ly))
    q = rng.standard_normal(n)
    chains = np.arange(n) % 3
    steps = 10 + np.arange(n) // 3 * 5
    path = tmp_path / "e.h5"
    with EnsembleWriter.create(path, attrs_for(Lx, Ly), ["q"]) as w:
        for a, b in [(0, 1), (1, 9), (9, 9), (9, n)]:
            w.append(S[a:b], {"q": q[a:b]}, chain=chains[a:b], step=steps[a:b])
        assert len(w) == n and w.committed == n
    with open_ensemble(path) as ens:
        assert len(ens) == n and ens.shape == (n, Lx, Ly) and (ens.Lx, ens.Ly) == (Lx, Ly)
        full = ens[:]
        assert full.dtype == np.int8 and np.array_equal(full, S)
        assert np.array_equal(ens.chain, chains) and ens.chain.dtype == np.int32
        assert np.array_equal(ens.step, steps) and ens.step.dtype == np.int64
        assert set(ens.observables) == {"energy", "magnetization", "q"}
        assert np.array_equal(ens.observables["q"], q)
        e, m = iio._energy_magnetization(S)
        assert np.array_equal(ens.observables["energy"], e)
        assert np.array_equal(ens.observables["magnetization"], m)
        assert np.array_equal(ens.read_packed(slice(None)), pack_spins(S))


def test_attrs_round_trip(tmp_path):
    extra = {"stages": [{"model": "pixelshuffle3", "L": 192}], "note": "ünïcode", "n": 3, "x": 0.1}
    a = attrs_for(12, 20, beta=0.1 + 0.2, J=-0.75, h=1e-300, seed=2**40 + 1, algorithm="wolff",
                  backend="cupy", thermalization=0, spacing=1, extra=extra)
    path = tmp_path / "a.h5"
    t0 = time.time()
    EnsembleWriter.create(path, a, {"c10x": "nearest-neighbour correlation along x"}).close()
    with open_ensemble(path) as ens:
        at = ens.attrs
    assert type(at) is dict
    for k, v in a.items():
        assert at[k] == v and type(at[k]) is type(v), k
    assert at["format"] == "isingcore-ensemble" and at["format_version"] == 1
    import isingcore

    assert at["isingcore_version"] == isingcore.__version__
    assert at["hdf5_version"] == h5py.version.hdf5_version and at["recoveries"] == []
    import uuid

    assert uuid.UUID(at["uuid"]).version == 4
    assert "big-endian" in at["spin_encoding"] and at["spin_encoding"] == iio.SPIN_ENCODING
    created = at["created"]
    assert created.endswith("Z")
    from datetime import datetime

    ts = datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
    assert t0 - 2 <= ts <= time.time() + 2
    with h5py.File(path, "r") as f:  # the raw file is self-describing without isingcore
        assert f["observables/c10x"].attrs["description"] == "nearest-neighbour correlation along x"
        assert "per site" in f["observables/energy"].attrs["description"]
        assert json.loads(f.attrs["extra"]) == extra
        assert f.attrs["Lx"].dtype == np.int64 and f.attrs["beta"].dtype == np.float64
        assert f["spins"].chunks == (1, 12, 3) and f["spins"].compression == "gzip"


def test_defaults_for_J_and_h(tmp_path):
    a = attrs_for(4, 4)
    del a["J"], a["h"]
    EnsembleWriter.create(tmp_path / "d.h5", a).close()
    with open_ensemble(tmp_path / "d.h5") as ens:
        assert ens.attrs["J"] == 1.0 and ens.attrs["h"] == 0.0 and len(ens) == 0 and ens[:].shape == (0, 4, 4)


@pytest.fixture
def small_ensemble(tmp_path):
    rng = np.random.default_rng(11)
    S = random_spins(rng, (40, 6, 11))
    path = tmp_path / "s.h5"
    with EnsembleWriter.create(path, attrs_for(6, 11)) as w:
        w.append(S, None, chain=0, step=np.arange(1, 41))
    return path, S


def test_lazy_indexing(small_ensemble):
    path, S = small_ensemble
    with open_ensemble(path) as ens:
        assert np.array_equal(ens[0], S[0]) and ens[0].shape == (6, 11)
        assert np.array_equal(ens[-1], S[-1])
        assert np.array_equal(ens[np.int64(5)], S[5])
        assert np.array_equal(ens[3:17], S[3:17])
        assert np.array_equal(ens[3:17:4], S[3:17:4])
        assert np.array_equal(ens[::-7], S[::-7])
        assert np.array_equal(ens[30:500], S[30:])
        assert ens[10:5].shape == (0, 6, 11)
        idx = [17, 2, 2, -1, 0]
        assert np.array_equal(ens[idx], S[idx])
        assert np.array_equal(ens[np.array(idx)], S[idx])
        assert ens[[]].shape == (0, 6, 11)
        mask = np.arange(40) % 3 == 0
        assert np.array_equal(ens[mask], S[mask])
        with pytest.raises(IndexError):
            ens[40]
        with pytest.raises(IndexError):
            ens[-41]
        with pytest.raises(IndexError):
            ens[[0, 40]]
        with pytest.raises(IndexError):
            ens[np.ones(3, dtype=bool)]
        with pytest.raises(TypeError):
            ens[0, 1]
        with pytest.raises(TypeError):
            ens[[0.5]]
        assert sum(1 for _ in ens) == 40


def test_iter_blocks(small_ensemble):
    path, S = small_ensemble
    with open_ensemble(path) as ens:
        blocks = list(ens.iter_blocks(16))
        assert [b.shape[0] for b in blocks] == [16, 16, 8]
        assert np.array_equal(np.concatenate(blocks), S)
        assert np.array_equal(np.concatenate(list(ens.iter_blocks(7, start=5, stop=30))), S[5:30])
        with pytest.raises(ValueError, match="size"):
            next(ens.iter_blocks(0))


def test_reads_are_lazy(small_ensemble):
    """Reading one configuration touches only its chunk: a damaged chunk elsewhere goes unnoticed
    until it is read, and then it is reported (fletcher32) as an EnsembleFormatError."""
    path, S = small_ensemble
    with h5py.File(path, "r") as f:
        info = f["spins"].id.get_chunk_info_by_coord((20, 0, 0))
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + 2)
        b = fh.read(1)
        fh.seek(info.byte_offset + 2)
        fh.write(bytes([b[0] ^ 0xFF]))
    with open_ensemble(path) as ens:
        assert np.array_equal(ens[:20], S[:20]) and np.array_equal(ens[21:], S[21:])
        with pytest.raises(EnsembleFormatError, match=str(path).replace("\\", "\\\\")):
            ens[20]
        with pytest.raises(EnsembleFormatError):
            list(ens.iter_blocks(8))


def test_closed_ensemble_and_repr(small_ensemble):
    path, _ = small_ensemble
    ens = open_ensemble(path)
    assert isinstance(ens, Ensemble) and "40 configurations of 6x11" in repr(ens)
    ens.close()
    ens.close()
    assert "closed" in repr(ens)
    with pytest.raises(ValueError, match="closed"):
        ens[0]


# ---------------------------------------------------------------------------------------------
# validation (errors name the parameter)
# ---------------------------------------------------------------------------------------------


def test_create_validation(tmp_path):
    p = tmp_path / "v.h5"
    a = attrs_for(4, 4)
    with pytest.raises(ValueError, match=r"missing required keys \['seed'\]"):
        EnsembleWriter.create(p, {k: v for k, v in a.items() if k != "seed"})
    with pytest.raises(ValueError, match=r"unknown keys \['chains'\].*extra"):
        EnsembleWriter.create(p, {**a, "chains": 2})
    with pytest.raises(ValueError, match="writer sets"):
        EnsembleWriter.create(p, {**a, "format_version": 2})
    with pytest.raises(ValueError, match=r"attrs\['Lx'\]"):
        EnsembleWriter.create(p, {**a, "Lx": 0})
    with pytest.raises(ValueError, match=r"attrs\['Ly'\]"):
        EnsembleWriter.create(p, {**a, "Ly": 4.0})
    with pytest.raises(ValueError, match=r"attrs\['beta'\]"):
        EnsembleWriter.create(p, {**a, "beta": float("nan")})
    with pytest.raises(ValueError, match=r"attrs\['seed'\]"):
        EnsembleWriter.create(p, {**a, "seed": -1})
    with pytest.raises(ValueError, match=r"attrs\['algorithm'\]"):
        EnsembleWriter.create(p, {**a, "algorithm": ""})
    with pytest.raises(ValueError, match=r"attrs\['extra'\].*JSON"):
        EnsembleWriter.create(p, {**a, "extra": {"x": object()}})
    with pytest.raises(ValueError, match="observable_names"):
        EnsembleWriter.create(p, a, ["a/b"])
    with pytest.raises(ValueError, match="observable_names"):
        EnsembleWriter.create(p, a, ["q", "q"])
    with pytest.raises(ValueError, match="observable_names"):
        EnsembleWriter.create(p, a, "energy")
    with pytest.raises(ValueError, match="compression_level"):
        EnsembleWriter.create(p, a, compression_level=11)
    assert not p.exists() and os.listdir(tmp_path) == []  # nothing was created by failed calls
    EnsembleWriter.create(p, a, ["energy", "magnetization"]).close()  # naming the fixed ones is fine
    with pytest.raises(FileExistsError):
        EnsembleWriter.create(p, a)
    with EnsembleWriter.create(p, attrs_for(4, 4, seed=99), overwrite=True) as w:
        assert w.attrs["seed"] == 99


def test_append_validation(tmp_path):
    rng = np.random.default_rng(1)
    S = random_spins(rng, (3, 4, 6))
    with EnsembleWriter.create(tmp_path / "w.h5", attrs_for(4, 6, J=1.0, h=0.25), ["q"]) as w:
        ok = dict(chain=0, step=[1, 2, 3])
        with pytest.raises(ValueError, match="spins must have dtype int8"):
            w.append(S.astype(np.int32), {"q": np.zeros(3)}, **ok)
        with pytest.raises(ValueError, match=r"spins must contain only"):
            w.append(np.zeros_like(S), {"q": np.zeros(3)}, **ok)
        with pytest.raises(ValueError, match=r"spins must have shape \(B, Lx, Ly\).*spins\[None\]"):
            w.append(S[0], {"q": np.zeros(1)}, chain=0, step=1)
        with pytest.raises(ValueError, match=r"spins must have shape"):
            w.append(S[:, :, :5], {"q": np.zeros(3)}, **ok)
        with pytest.raises(ValueError, match="observables is missing 'q'"):
            w.append(S, None, **ok)
        with pytest.raises(ValueError, match=r"names \['r'\]"):
            w.append(S, {"q": np.zeros(3), "r": np.zeros(3)}, **ok)
        with pytest.raises(ValueError, match=r"observables\['q'\] must have shape \(3,\)"):
            w.append(S, {"q": np.zeros(2)}, **ok)
        e, m = iio._energy_magnetization(S, 1.0, 0.25)
        with pytest.raises(ValueError, match=r"observables\['energy'\] disagrees"):
            w.append(S, {"q": np.zeros(3), "energy": e * 24}, **ok)  # total instead of per site
        with pytest.raises(ValueError, match=r"observables\['magnetization'\] disagrees"):
            w.append(S, {"q": np.zeros(3), "magnetization": np.abs(m) + 1}, **ok)
        with pytest.raises(ValueError, match=r"chain must be a scalar or have shape \(3,\)"):
            w.append(S, {"q": np.zeros(3)}, chain=[0, 1], step=[1, 2, 3])
        with pytest.raises(ValueError, match="chain values"):
            w.append(S, {"q": np.zeros(3)}, chain=-1, step=[1, 2, 3])
        with pytest.raises(ValueError, match="step must be an integer"):
            w.append(S, {"q": np.zeros(3)}, chain=0, step=[1.0, 2.0, 3.0])
        with pytest.raises(ValueError, match="step must increase strictly.*chain 0 got step 2 after step 2"):
            w.append(S, {"q": np.zeros(3)}, chain=0, step=[1, 2, 2])
        assert len(w) == 0  # nothing was written by the failed calls
        assert w.append(S, {"q": np.zeros(3), "energy": e.astype(np.float32)}, **ok) == 3
        with pytest.raises(ValueError, match="chain 0 got step 3 after step 3"):
            w.append(S[:1], {"q": np.zeros(1)}, chain=0, step=3)
        assert w.append(S[:1], {"q": [0.5]}, chain=1, step=3) == 4  # another chain may reuse a step
    with pytest.raises(ValueError, match="closed"):
        w.append(S, {"q": np.zeros(3)}, chain=0, step=[7, 8, 9])


def test_append_accepts_array_api_strict(tmp_path):
    xps = pytest.importorskip("array_api_strict")
    S = random_spins(np.random.default_rng(5), (2, 3, 9))
    with EnsembleWriter.create(tmp_path / "x.h5", attrs_for(3, 9)) as w:
        w.append(xps.asarray(S), None, chain=xps.asarray(np.array([0, 1])), step=xps.asarray(np.array([4, 4])))
    with open_ensemble(tmp_path / "x.h5") as ens:
        assert np.array_equal(ens[:], S) and ens.chain.tolist() == [0, 1]


@pytest.mark.gpu
def test_append_accepts_cupy(tmp_path):
    cp = pytest.importorskip("cupy")
    S = random_spins(np.random.default_rng(5), (2, 3, 9))
    with EnsembleWriter.create(tmp_path / "g.h5", attrs_for(3, 9)) as w:
        w.append(cp.asarray(S), None, chain=cp.arange(2), step=5)
    with open_ensemble(tmp_path / "g.h5") as ens:
        assert np.array_equal(ens[:], S)


# ---------------------------------------------------------------------------------------------
# flushing policy, live reading, locking, resume after a clean close
# ---------------------------------------------------------------------------------------------


def test_flush_policy_and_live_reader(tmp_path):
    S = random_spins(np.random.default_rng(2), (9, 4, 4))
    p = tmp_path / "f.h5"
    with EnsembleWriter.create(p, attrs_for(4, 4), flush_every=3) as w:
        w.append(S[0:1], None, chain=0, step=1)
        w.append(S[1:2], None, chain=0, step=2)
        assert (len(w), w.committed) == (2, 0)
        with open_ensemble(p) as ens:  # a reader only sees committed configurations
            assert len(ens) == 0
            w.append(S[2:3], None, chain=0, step=3)
            assert w.committed == 3
            assert ens.refresh() == 3 and np.array_equal(ens[:], S[:3])
        w.append(S[3:5], None, chain=0, step=[4, 5])
        assert w.committed == 3 and w.flush() == 5
    with EnsembleWriter.resume(p, flush_every=None, flush_interval=3600) as w:
        w.append(S[5:7], None, chain=0, step=[6, 7])
        assert w.committed == 5
    with open_ensemble(p) as ens:  # close() commits
        assert len(ens) == 7
    with EnsembleWriter.resume(p, flush_every=None, flush_interval=0.0) as w:
        w.append(S[7:8], None, chain=0, step=8)
        assert w.committed == 8
    with pytest.raises(ValueError, match="flush_every"):
        EnsembleWriter.resume(p, flush_every=0)


def test_single_writer_lock(tmp_path):
    p = tmp_path / "l.h5"
    with EnsembleWriter.create(p, attrs_for(4, 4)):
        with pytest.raises(EnsembleBusyError, match="live EnsembleWriter"):
            EnsembleWriter.resume(p)
        with pytest.raises(EnsembleBusyError):
            EnsembleWriter.create(p, attrs_for(4, 4), overwrite=True)
    EnsembleWriter.resume(p).close()  # released on close


def test_resume_after_clean_close(tmp_path):
    rng = np.random.default_rng(4)
    S = random_spins(rng, (10, 5, 9))
    p = tmp_path / "r.h5"
    with EnsembleWriter.create(p, attrs_for(5, 9)) as w:
        w.append(S[:6], None, chain=[0, 1, 0, 1, 2, 0], step=[5, 5, 10, 10, 3, 15])
    with open_ensemble(p) as ens:
        created = ens.attrs["created"]
        with pytest.raises(EnsembleBusyError):  # an open reader (HDF5 shared lock) keeps writers out
            EnsembleWriter.resume(p)
    with EnsembleWriter.resume(p) as w:
        last = w.last_state()
        assert set(last) == {0, 1, 2}
        assert all(isinstance(v, ChainState) for v in last.values())
        assert (last[0].step, last[0].count) == (15, 3) and np.array_equal(last[0].spins, S[5])
        assert (last[1].step, last[1].count) == (10, 2) and np.array_equal(last[1].spins, S[3])
        assert (last[2].step, last[2].count) == (3, 1) and np.array_equal(last[2].spins, S[4])
        assert last[0].spins.dtype == np.int8 and last[0].spins.shape == (5, 9)
        spins, step, count = last[1]  # a plain (spins, step, count) tuple too
        assert step == 10 and count == 2
        with pytest.raises(ValueError, match="chain 0 got step 15 after step 15"):
            w.append(S[6:7], None, chain=0, step=15)
        w.append(S[6:10], None, chain=[0, 1, 0, 3], step=[20, 15, 25, 1])
        assert w.last_state()[0].count == 5 and w.last_state()[3].step == 1
    with open_ensemble(p) as ens:
        assert np.array_equal(ens[:], S) and ens.attrs["created"] == created
        assert ens.attrs["recoveries"] == []  # a clean close needs no recovery


# ---------------------------------------------------------------------------------------------
# files that are not (readable) ensembles
# ---------------------------------------------------------------------------------------------


def test_not_hdf5(tmp_path):
    for name, content in [("garbage.h5", os.urandom(4096)), ("text.h5", b"energy,magnetization\n1,2\n" * 50),
                          ("empty.h5", b"")]:
        p = tmp_path / name
        p.write_bytes(content)
        with pytest.raises(EnsembleFormatError, match="not an HDF5 file") as err:
            open_ensemble(p)
        assert str(p) in str(err.value) and isinstance(err.value, ValueError)
        with pytest.raises(EnsembleFormatError):
            EnsembleWriter.resume(p)
    with pytest.raises(FileNotFoundError):
        open_ensemble(tmp_path / "missing.h5")
    with pytest.raises(FileNotFoundError):
        EnsembleWriter.resume(tmp_path / "missing.h5")


def test_hdf5_but_not_an_ensemble(tmp_path):
    p = tmp_path / "other.h5"
    with h5py.File(p, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(EnsembleFormatError, match="not an isingcore ensemble") as err:
        open_ensemble(p)
    assert str(p) in str(err.value)
    p2 = tmp_path / "wrongfmt.h5"
    with h5py.File(p2, "w") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(EnsembleFormatError, match="'something-else'"):
        open_ensemble(p2)


def _edit(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)


def test_newer_version_and_damaged_structure(small_ensemble, tmp_path):
    path, _ = small_ensemble
    variants = {
        "newer": (lambda f: f.attrs.__setitem__("format_version", np.int64(2)), "format_version 2.*upgrade"),
        "noversion": (lambda f: f.attrs.__delitem__("format_version"), "format_version"),
        "noattr": (lambda f: f.attrs.__delitem__("beta"), r"\['beta'\] are missing"),
        "badextra": (lambda f: f.attrs.__setitem__("extra", "{not json"), "'extra' is not valid JSON"),
        "nospins": (lambda f: f.__delitem__("spins"), "required dataset"),
        "noenergy": (lambda f: f.__delitem__("observables/energy"), "energy is missing"),
        "badshape": (lambda f: f.attrs.__setitem__("Ly", np.int64(20)), "inconsistent with Lx=6, Ly=20"),
        "committed": (lambda f: f["committed"].__setitem__((), np.int64(41)),
                      "committed = 41 but datasets are shorter"),
    }
    for name, (edit, msg) in variants.items():
        p = tmp_path / f"{name}.h5"
        shutil.copy(path, p)
        _edit(p, edit)
        with pytest.raises(EnsembleFormatError, match=msg) as err:
            open_ensemble(p)
        assert str(p) in str(err.value), name


def test_truncated_file(small_ensemble, tmp_path):
    path, _ = small_ensemble
    data = path.read_bytes()
    for frac in (0.5, 0.9, 0.1):
        p = tmp_path / f"cut{frac}.h5"
        p.write_bytes(data[: int(len(data) * frac)])
        with pytest.raises(EnsembleFormatError, match="truncated") as err:
            open_ensemble(p)
        assert str(p) in str(err.value)


def test_file_size_per_configuration(tmp_path):
    """Guard the numbers in docs/FORMAT.md: 64 configurations of 128^2, committed one by one."""
    rng = np.random.default_rng(0)
    S = random_spins(rng, (64, 128, 128))
    p = tmp_path / "size.h5"
    with EnsembleWriter.create(p, attrs_for(128, 128)) as w:
        for i in range(64):
            w.append(S[i : i + 1], None, chain=0, step=i + 1)
    per_config = os.path.getsize(p) / 64
    # 2048 bytes of packed bits per configuration, incompressible; the rest is format overhead
    assert 2048 < per_config < 2048 * 1.25, per_config


# ---------------------------------------------------------------------------------------------
# joined ensembles (one file per worker, HDF5 virtual datasets)
# ---------------------------------------------------------------------------------------------


def _write_parts(d, S, splits, attrs=None, chains=None):
    paths = []
    d.mkdir(parents=True, exist_ok=True)
    for k, (a, b) in enumerate(splits):
        p = d / f"part{k}.h5"
        with EnsembleWriter.create(p, attrs or attrs_for(5, 13), ["q"]) as w:
            if b > a:
                w.append(S[a:b], {"q": np.arange(a, b, dtype=float)}, chain=(chains or range(len(splits)))[k],
                         step=np.arange(1, b - a + 1))
        paths.append(p)
    return paths


def test_join_ensembles(tmp_path):
    S = random_spins(np.random.default_rng(8), (12, 5, 13))
    parts = _write_parts(tmp_path / "workers", S, [(0, 4), (4, 4), (4, 12)])
    out = join_ensembles(parts, tmp_path / "all.h5")
    with open_ensemble(out) as ens:
        assert len(ens) == 12 and np.array_equal(ens[:], S) and np.array_equal(ens[[7, 0]], S[[7, 0]])
        assert ens.chain.tolist() == [0] * 4 + [2] * 8 and ens.step.tolist() == [1, 2, 3, 4, *range(1, 9)]
        assert np.array_equal(ens.observables["q"], np.arange(12.0))
        assert np.array_equal(ens.observables["energy"], iio._energy_magnetization(S)[0])
        a = ens.attrs
        assert [p["file"] for p in a["parts"]] == [f"workers/part{k}.h5" for k in range(3)]
        assert [p["configurations"] for p in a["parts"]] == [4, 0, 8] and a["beta"] == attrs_for(1, 1)["beta"]
    with pytest.raises(EnsembleFormatError, match="joined ensemble"):
        EnsembleWriter.resume(out)
    # the joined file and its parts move together
    shutil.move(tmp_path, tmp_path.parent / (tmp_path.name + "-moved"))
    moved = tmp_path.parent / (tmp_path.name + "-moved")
    with open_ensemble(moved / "all.h5") as ens:
        assert np.array_equal(ens[:], S)
    # a part replaced by another file, or missing, is an error, never fill values
    with EnsembleWriter.create(moved / "workers" / "part2.h5", attrs_for(5, 13), ["q"], overwrite=True) as w:
        w.append(S[4:12], {"q": np.arange(4, 12.0)}, chain=2, step=np.arange(1, 9))
    with pytest.raises(EnsembleFormatError, match="not the file that was joined"):
        open_ensemble(moved / "all.h5")
    os.remove(moved / "workers" / "part2.h5")
    with pytest.raises(EnsembleFormatError, match="part2.h5' is missing"):
        open_ensemble(moved / "all.h5")


def test_join_ensembles_refuses_inconsistent_parts(tmp_path):
    S = random_spins(np.random.default_rng(9), (6, 5, 13))
    same_chain = _write_parts(tmp_path / "a", S, [(0, 3), (3, 6)], chains=[1, 1])
    with pytest.raises(ValueError, match="chain 1 occurs in both"):
        join_ensembles(same_chain, tmp_path / "j.h5")
    other_beta = _write_parts(tmp_path / "b", S, [(0, 3)], chains=[5], attrs=attrs_for(5, 13, beta=0.3))
    with pytest.raises(ValueError, match="differs .* in beta"):
        join_ensembles([same_chain[0], other_beta[0]], tmp_path / "j.h5")
    with pytest.raises(ValueError, match="given twice"):
        join_ensembles([same_chain[0], same_chain[0]], tmp_path / "j.h5")
    with EnsembleWriter.resume(same_chain[1]):  # open for writing: not joinable
        with pytest.raises(EnsembleFormatError, match="not closed cleanly"):
            join_ensembles([same_chain[0]] + [same_chain[1]], tmp_path / "j.h5")
    assert not (tmp_path / "j.h5").exists()


# ---------------------------------------------------------------------------------------------
# crash safety: real processes killed with SIGKILL
# ---------------------------------------------------------------------------------------------

# A writer process: creates the file or resumes it, then appends forever, one configuration per
# chain and call, printing the committed count after each append. The spins of (chain, step) are
# a deterministic pick from a bank, so every stored row can be checked against its labels.
CHILD = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    from isingcore.io import EnsembleWriter

    path, L, C, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    bank = np.random.default_rng(12345).choice(np.array([-1, 1], dtype=np.int8), size=(5, L, L))
    if mode == "kill-before-publish":          # die inside create, right before the file appears
        os.link = lambda *a: os.kill(os.getpid(), 9)
    if mode == "kill-before-replace":          # die inside resume's recovery, before the swap
        os.replace = lambda *a: os.kill(os.getpid(), 9)
    if os.path.exists(path):
        w = EnsembleWriter.resume(path)
        step = max([s.step for s in w.last_state().values()], default=0)
    else:
        attrs = dict(algorithm="test", beta=0.4, Lx=L, Ly=L, seed=1, thermalization=0, spacing=1,
                     backend="numpy")
        w = EnsembleWriter.create(path, attrs, ["stepf"])
        step = 0
    print("ready", w.committed, flush=True)
    while True:
        step += 1
        spins = np.stack([bank[(7 * c + step) % 5] for c in range(C)])
        w.append(spins, {"stepf": np.full(C, float(step))}, chain=np.arange(C), step=step)
        print(w.committed, flush=True)
        if mode == "kill-after-data-flush":     # data flushed, count not yet committed
            w.flush_every = None
            step += 1
            spins = np.stack([bank[(7 * c + step) % 5] for c in range(C)])
            w.append(spins, {"stepf": np.full(C, float(step))}, chain=np.arange(C), step=step)
            w._f.flush()
            os.kill(os.getpid(), 9)
    """
)


def _bank(L):
    return np.random.default_rng(12345).choice(np.array([-1, 1], dtype=np.int8), size=(5, L, L))


def _spawn(path, L, C, mode="loop"):
    return subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(L), str(C), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill(proc):
    os.kill(proc.pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, err
    return out.split()


def _reported(tokens):
    """The last committed count the child printed (0 if none)."""
    nums = [int(t) for t in tokens if t.isdigit()]
    return nums[-1] if nums else 0


def _verify(path, L, C):
    """Check the whole file: every chain has steps 1..k without gaps or repeats, every row holds
    the spins and observables of its (chain, step). Returns the number of configurations."""
    bank = _bank(L)
    with open_ensemble(path) as ens:
        n = len(ens)
        chain, step = ens.chain, ens.step
        assert n % C == 0, "a batch is committed whole"
        for c in range(C):
            s = step[chain == c]
            assert np.array_equal(s, np.arange(1, len(s) + 1)), f"chain {c}: steps {s}"
        assert np.array_equal(ens.observables["stepf"], step.astype(float))
        a = 0
        for block in ens.iter_blocks(64):
            k = len(block)
            expect = bank[(7 * chain[a : a + k] + step[a : a + k]) % 5]
            assert np.array_equal(block, expect)
            e, m = iio._energy_magnetization(expect)
            assert np.array_equal(ens.observables["energy"][a : a + k], e)
            a += k
        return n


def _crash_rounds(tmp_path, L, C, rounds, rng, min_commits=(0, 6)):
    path = tmp_path / f"crash{L}.h5"
    done = 0
    for r in range(rounds):
        proc = _spawn(path, L, C)
        lines = []
        if rng.random() < 0.25:
            time.sleep(rng.uniform(0.0, 0.8))  # anywhere: import, create, recovery, writing
        else:
            want = rng.randint(*min_commits)
            while True:  # let it commit a few batches, then kill it while it is writing
                line = proc.stdout.readline()
                assert line, proc.stderr.read()
                lines.append(line)
                if line.startswith("ready"):
                    start = int(line.split()[1])
                    assert start >= done  # nothing committed was lost by the previous crash
                elif int(line) >= start + want * C:
                    break
            time.sleep(rng.uniform(0.0, 0.03))
        reported = _reported(" ".join(lines).split() + _kill(proc))
        if not path.exists():
            assert reported == 0
            continue
        n = _verify(path, L, C)
        assert n >= reported and n >= done
        done = n
    return path, done


@posix_only
def test_sigkill_crash_resume(tmp_path):
    seed = int(os.environ.get("ISINGCORE_IO_CRASH_SEED", random.randrange(2**31)))
    rng = random.Random(seed)
    print(f"ISINGCORE_IO_CRASH_SEED={seed}")
    L, C = 512, 2
    path = tmp_path / f"crash{L}.h5"
    # a live writer: readable while it writes, and it keeps other writers out
    proc = _spawn(path, L, C)
    while int((line := proc.stdout.readline()).split()[-1]) < 3 * C:
        assert line, proc.stderr.read()
    with open_ensemble(path) as ens:
        n0 = len(ens)
        assert n0 >= 3 * C and np.array_equal(ens[0], _bank(L)[1])
        with pytest.raises(EnsembleBusyError):
            EnsembleWriter.resume(path)
        deadline = time.time() + 20
        while ens.refresh() == n0:
            assert time.time() < deadline
            time.sleep(0.01)
    reported = _reported(_kill(proc))
    assert _verify(path, L, C) >= reported
    # killed at random moments, large configurations
    path, n = _crash_rounds(tmp_path, L, C, 3, rng)
    # a small lattice: many kills, also inside create/recovery
    path64, n64 = _crash_rounds(tmp_path, 64, 3, 5, rng)
    # resume in this process, continue every chain where it stopped
    for p, L_, C_ in [(path, 512, 2), (path64, 64, 3)]:
        if not p.exists():
            continue
        before = _verify(p, L_, C_)
        with EnsembleWriter.resume(p) as w:
            last = w.last_state()
            k = before // C_
            assert sorted(last) == (list(range(C_)) if k else [])
            bank = _bank(L_)
            for c, s in last.items():
                assert s.step == k and s.count == k and np.array_equal(s.spins, bank[(7 * c + k) % 5])
            for step in range(k + 1, k + 4):
                w.append(np.stack([bank[(7 * c + step) % 5] for c in range(C_)]), {"stepf": np.full(C_, float(step))},
                         chain=np.arange(C_), step=step)
        assert _verify(p, L_, C_) == before + 3 * C_
        with open_ensemble(p) as ens:
            assert len(ens.attrs["recoveries"]) >= 1
    for p in (path, path64):  # resume removed what dead writers left behind
        if p.exists():
            assert [x for x in os.listdir(tmp_path) if x.startswith(f".{p.name}.")] == []


@posix_only
def test_kill_after_data_flush_before_commit(tmp_path):
    """The count is the commit: flushed-but-uncommitted rows are invisible and dropped on resume."""
    p = tmp_path / "u.h5"
    proc = _spawn(p, 16, 2, "kill-after-data-flush")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err
    assert _reported(out.split()) == 2
    with h5py.File(p, "r", swmr=True) as f:
        assert f["spins"].shape[0] == 4 and f["committed"][()] == 2  # the uncommitted batch is on disk
    assert _verify(p, 16, 2) == 2
    with EnsembleWriter.resume(p) as w:
        assert len(w) == 2 and {c: s.step for c, s in w.last_state().items()} == {0: 1, 1: 1}
        bank = _bank(16)
        w.append(np.stack([bank[(7 * c + 2) % 5] for c in range(2)]), {"stepf": [2.0, 2.0]}, chain=[0, 1], step=2)
    assert _verify(p, 16, 2) == 4
    with open_ensemble(p) as ens:
        (rec,) = ens.attrs["recoveries"]
        assert rec["committed"] == 2 and rec["dropped_uncommitted_rows"] == 2


@posix_only
def test_kill_inside_create_and_inside_recovery(tmp_path):
    p = tmp_path / "k.h5"
    proc = _spawn(p, 16, 1, "kill-before-publish")
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not p.exists()  # a writer dying in create leaves no half-made file behind ...
    stale = [x for x in os.listdir(tmp_path) if x.endswith(".isingcore-tmp")]
    assert len(stale) == 1  # ... only its temporary file
    proc = _spawn(p, 16, 1)
    while _reported([proc.stdout.readline().strip()]) < 3:
        pass
    _kill(proc)
    n = _verify(p, 16, 1)
    before = p.read_bytes()
    proc = _spawn(p, 16, 1, "kill-before-replace")  # the recovery copy is made, then the writer dies
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert p.read_bytes() == before and _verify(p, 16, 1) == n  # the original is untouched
    with EnsembleWriter.resume(p) as w:
        assert len(w) == n
    assert [x for x in os.listdir(tmp_path) if x.endswith(".isingcore-tmp")] == []  # stale files cleaned
    # a crashed file cut in half is reported, not misread
    cut = tmp_path / "cut.h5"
    proc = _spawn(p, 16, 1)
    while _reported([proc.stdout.readline().strip()]) < n + 3:
        pass
    _kill(proc)
    data = p.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(EnsembleFormatError, match="cut.h5"):
        open_ensemble(cut)


def _tear_boundary_chunks(path, n):
    """Do to ``path`` what a SIGKILL during the rewrite of a series chunk does.

    Every 1-d series chunk that holds committed rows and uncommitted room (the chunk of row
    ``n - 1``) is rewritten in place by each append into it, and the kernel stops a killed
    process's write at a page boundary: the chunk is left part new, part old. The committed
    bytes are the same in both; everything after them (uncommitted rows, and a Fletcher-32
    checksum where there is one) can be anything. Here it is random bytes.
    """
    names = ["chain", "step"]
    with h5py.File(path, "r", swmr=True, locking=False) as f:
        names += [f"observables/{k}" for k in f["observables"]]
        where = []
        for name in names:
            ds = f[name]
            first = (n - 1) // ds.chunks[0] * ds.chunks[0]
            info = ds.id.get_chunk_info_by_coord((first,))
            where.append((info.byte_offset + (n - first) * ds.dtype.itemsize, info.byte_offset + info.size))
    rng = np.random.default_rng(99)
    with open(path, "r+b") as fh:
        for a, b in where:
            assert b > a
            fh.seek(a)
            fh.write(rng.integers(0, 256, b - a, dtype=np.uint8).tobytes())


@pytest.mark.parametrize("legacy", [False, True], ids=["current", "fletcher32-series"])
def test_torn_series_chunk_of_a_killed_writer(tmp_path, monkeypatch, legacy):
    """Regression: SIGKILL during the in-place rewrite of a series chunk must not cost committed
    rows (the many-rounds SIGKILL test once found the last committed configuration unreadable:
    "filter returned failure during read"). Current files keep the series without a checksum,
    so a torn chunk is harmless; files of older writers (Fletcher-32 on the series) are read and
    recovered by decoding that one chunk without its checksum."""
    if legacy:
        monkeypatch.setattr(iio, "_SERIES_FILTERS", {"fletcher32": True})
    rng = np.random.default_rng(5)
    S = random_spins(rng, (300, 5, 9))
    p, dead = tmp_path / "t.h5", tmp_path / "dead.h5"
    n = 270  # chunk 1 of each series holds committed rows 256..269 and room for more
    w = EnsembleWriter.create(p, attrs_for(5, 9), ["x"])
    for a in range(0, n, 3):
        w.append(S[a : a + 3], {"x": np.arange(a, a + 3.0)}, chain=[0, 1, 2], step=a // 3 + 1)
    shutil.copy(p, dead)  # the file as a writer killed right now leaves it (SWMR flags set)
    w.close()
    monkeypatch.undo()
    with h5py.File(dead, "r", swmr=True, locking=False) as f:
        assert f["spins"].fletcher32 and f["spins"].compression == "gzip"  # spins keep their checksum
        assert all(f[k].fletcher32 == legacy for k in ("chain", "step", "observables/energy", "observables/x"))
    _tear_boundary_chunks(dead, n)
    chain, step = np.tile([0, 1, 2], n // 3), np.repeat(np.arange(1, n // 3 + 1), 3)
    with open_ensemble(dead) as ens:
        assert len(ens) == n and np.array_equal(ens[:], S[:n]) and np.array_equal(ens[n - 1], S[n - 1])
        assert np.array_equal(ens.chain, chain) and np.array_equal(ens.step, step)
        assert np.array_equal(ens.observables["x"], np.arange(n, dtype=float))
        e, m = iio._energy_magnetization(S[:n])
        assert np.array_equal(ens.observables["energy"], e) and np.array_equal(ens.observables["magnetization"], m)
    with EnsembleWriter.resume(dead) as w:  # recovery copies the committed rows, then appends go on
        last = w.last_state()
        assert {c: (s.step, s.count) for c, s in last.items()} == {c: (n // 3, n // 3) for c in range(3)}
        assert np.array_equal(last[2].spins, S[n - 1])
        for a in range(n, 300, 3):
            w.append(S[a : a + 3], {"x": np.arange(a, a + 3.0)}, chain=[0, 1, 2], step=a // 3 + 1)
    with open_ensemble(dead) as ens:
        assert np.array_equal(ens[:], S) and np.array_equal(ens.observables["x"], np.arange(300.0))
        assert np.array_equal(ens.step, np.repeat(np.arange(1, 101), 3))
        assert len(ens.attrs["recoveries"]) == 1 and not ens._f["chain"].fletcher32  # rewritten in the current layout


def test_fletcher32_series_damage_elsewhere_is_reported(tmp_path, monkeypatch):
    """The checksum-free decoding of old files is confined to the chunk of the last committed row:
    damage to any other chunk of a Fletcher-32 series is still an error."""
    monkeypatch.setattr(iio, "_SERIES_FILTERS", {"fletcher32": True})
    p = tmp_path / "old.h5"
    with EnsembleWriter.create(p, attrs_for(4, 4), ["x"]) as w:
        w.append(random_spins(np.random.default_rng(1), (300, 4, 4)), {"x": np.arange(300.0)}, chain=0,
                 step=np.arange(1, 301))
    with h5py.File(p, "r") as f:
        info = f["observables/x"].id.get_chunk_info_by_coord((0,))
    with open(p, "r+b") as fh:
        fh.seek(info.byte_offset + 8 * 10)
        fh.write(b"\x01")
    with open_ensemble(p) as ens:
        assert len(ens) == 300 and ens.observables["energy"].shape == (300,)
        with pytest.raises(EnsembleFormatError, match="observables/x"):
            ens.observables["x"]


@pytest.mark.slow
@posix_only
def test_sigkill_many_rounds(tmp_path):
    seed = int(os.environ.get("ISINGCORE_IO_CRASH_SEED", random.randrange(2**31)))
    print(f"ISINGCORE_IO_CRASH_SEED={seed}")
    rng = random.Random(seed)
    for L, C, rounds in [(512, 2, 15), (33, 4, 40)]:
        path, n = _crash_rounds(tmp_path, L, C, rounds, rng, min_commits=(0, 20))
        assert n > 0
