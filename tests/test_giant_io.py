"""Giant-lattice files (isingcore.giant): bit-packed tile chunks, lazy reading, format checks."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from isingcore import giant
from isingcore.io import pack_spins


def spins(shape, seed=0):
    return np.random.default_rng(seed).choice(np.array([-1, 1], np.int8), size=shape)


@pytest.mark.parametrize("shape, tile", [((40, 44), 16), ((17, 9), 8), ((64, 64), 64)])
def test_round_trip_and_lazy_slices(tmp_path, shape, tile):
    s = spins(shape, sum(shape))
    path = str(tmp_path / "g.h5")
    giant.write_giant(path, s, tile=tile, attrs={"beta": 0.44, "note": {"a": 1}})
    with h5py.File(path, "r") as f:  # the stored bytes are exactly pack_spins, chunked by tiles, gzip
        assert f.attrs["format"] == "isingcore-giant" and f.attrs["format_version"] == 1
        np.testing.assert_array_equal(f["spins"][...], pack_spins(s))
        assert f["spins"].chunks == (min(tile, shape[0]), min(tile // 8, -(-shape[1] // 8)))
        assert f["spins"].compression == "gzip" and f["spins"].fletcher32
    with giant.open_giant(path) as g:
        assert g.shape == shape and g.dtype == np.int8 and g.attrs["beta"] == 0.44
        np.testing.assert_array_equal(np.asarray(g), s)
        rs = np.random.default_rng(1)
        for _ in range(30):
            r0, c0 = rs.integers(0, shape[0]), rs.integers(0, shape[1])
            r1, c1 = rs.integers(r0, shape[0] + 1), rs.integers(c0, shape[1] + 1)
            np.testing.assert_array_equal(g[r0:r1, c0:c1], s[r0:r1, c0:c1])
        np.testing.assert_array_equal(g[3], s[3:4])
        np.testing.assert_array_equal(g.to_dask(chunks=(7, 5)).compute(scheduler="threads"), s)
        got = np.zeros_like(s)
        n = 0
        for x0, y0, b in g.tiles():
            got[x0:x0 + b.shape[0], y0:y0 + b.shape[1]] = b
            n += 1
        np.testing.assert_array_equal(got, s)
        assert n == -(-shape[0] // tile) * -(-shape[1] // tile)


def test_packed_target_with_dask_store(tmp_path):
    import dask.array as da

    s = spins((48, 40), 3)
    with giant.create_file(str(tmp_path / "d.h5")) as f:
        ds = giant.create_lattice(f, "spins", s.shape, tile=16)
        seen = []
        t = giant.PackedTarget(ds, on_block=lambda b: seen.append(b.shape))
        da.store(da.from_array(s, chunks=16), t, lock=False, scheduler="threads")
        assert len(seen) == 9
    with giant.open_giant(str(tmp_path / "d.h5")) as g:
        np.testing.assert_array_equal(g[:, :], s)


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="tile"):
        giant.write_giant(str(tmp_path / "x.h5"), spins((8, 8)), tile=12)
    path = str(tmp_path / "y.h5")
    giant.write_giant(path, spins((16, 16)), tile=8)
    with pytest.raises(FileExistsError):
        giant.write_giant(path, spins((16, 16)), tile=8)
    with giant.create_file(str(tmp_path / "z.h5")) as f:
        t = giant.PackedTarget(giant.create_lattice(f, "spins", (16, 16), tile=8))
        with pytest.raises(ValueError, match="multiple of 8"):
            t[0:8, 4:12] = spins((8, 8))
        with pytest.raises(ValueError, match="values"):
            t[0:8, 0:8] = np.zeros((8, 8), np.int8)
    with h5py.File(str(tmp_path / "other.h5"), "w") as f:
        f.attrs["format"] = "isingcore-ensemble"
    with pytest.raises(giant.GiantFormatError, match="not a giant-lattice file"):
        giant.open_giant(str(tmp_path / "other.h5"))
    with pytest.raises(giant.GiantFormatError, match="no dataset"):
        giant.open_giant(path, "stages/9")
    with giant.open_giant(path) as g, pytest.raises(IndexError, match="step"):
        g[::2, :]
