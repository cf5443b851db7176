"""Giant lattices on disk: one bit-packed, tile-chunked, gzip-compressed HDF5 dataset per lattice.

A giant lattice (one configuration of ``Lx x Ly`` spins, e.g. 41,472^2 = 1.7e9 spins from the
tiled inverse-RG pipeline of :mod:`isingcore.rg.tiled`) does not fit comfortably in memory as
int8 arrays, and not at all as float fields. It is stored as ``docs/FORMAT.md`` §10 describes:

* root attribute ``format = "isingcore-giant"``, ``format_version = 1``, provenance;
* ``/spins``: uint8 ``(Lx, ceil(Ly/8))``, the spins bit-packed along rows exactly as in ensemble
  files (:func:`isingcore.io.pack_spins`: column ``8k`` in the most significant bit of byte ``k``,
  bit 1 = spin +1), chunked by tiles ``(T, T/8)``, gzip, Fletcher-32;
* ``/stages/<t>``: the lattice after stage ``t`` of the generation (``/spins`` is a hard link to
  the last one), each with attributes ``Lx``, ``Ly``, ``stage``, ``tile``.

:class:`GiantLattice` opens such a dataset *lazily*: indexing with two slices reads and unpacks
only the chunks it touches, so it can be handed to ``dask.array.from_array`` (:meth:`to_dask`) or
walked tile by tile (:meth:`tiles`). :class:`PackedTarget` is the write side, a ``dask.array.store``
target that packs each int8 block on the fly (block column offsets must be multiples of 8).
"""

from __future__ import annotations

import os
import threading
from datetime import datetime, timezone

import numpy as np

FORMAT = "isingcore-giant"
FORMAT_VERSION = 1
SPIN_ENCODING = ("rows bit-packed along the last axis: byte k of a row holds columns 8k..8k+7, column 8k in the "
                 "most significant bit, bit 1 = spin +1, zero padding bits at the end of a row")
#: gzip level of the tile chunks
GZIP_LEVEL = 4
#: HDF5 chunk cache of a reader (bytes of decompressed chunks kept per dataset)
CHUNK_CACHE_BYTES = 128 << 20


class GiantFormatError(ValueError):
    """The file is not a giant-lattice file this version of isingcore can read."""


def _check_tile(tile, name="tile"):
    import numbers

    if isinstance(tile, bool) or not isinstance(tile, numbers.Integral) or tile < 8 or tile % 8:
        raise ValueError(f"{name} must be a positive multiple of 8 (tiles are stored as bit-packed chunks of "
                         f"{name}/8 bytes per row), got {tile!r}")
    return int(tile)


def create_file(path: str, attrs: dict | None = None, *, overwrite: bool = False):
    """Create (truncate with ``overwrite``) a giant-lattice file; returns the open ``h5py.File`` (mode ``w``).

    ``attrs``: extra root attributes (str, int, float; dicts and lists are stored as JSON strings).
    """
    import json

    import h5py

    import isingcore

    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    f = h5py.File(path, "w", libver=("v110", "latest"))
    f.attrs["format"] = FORMAT
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["isingcore_version"] = str(isingcore.__version__)
    f.attrs["h5py_version"] = h5py.version.version
    f.attrs["hdf5_version"] = h5py.version.hdf5_version
    f.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    f.attrs["spin_encoding"] = SPIN_ENCODING
    for k, v in (attrs or {}).items():
        f.attrs[k] = json.dumps(v) if isinstance(v, (dict, list, tuple)) else v
    return f


def create_lattice(group, name: str, shape: tuple[int, int], *, tile: int, attrs: dict | None = None):
    """An empty packed lattice dataset ``group[name]`` of ``shape = (Lx, Ly)`` spins, chunked by ``tile``."""
    tile = _check_tile(tile)
    Lx, Ly = (int(v) for v in shape)
    if Lx < 1 or Ly < 1:
        raise ValueError(f"shape must be two positive sizes, got {shape}")
    nb = -(-Ly // 8)
    chunks = (min(tile, Lx), min(tile // 8, nb))
    ds = group.create_dataset(name, shape=(Lx, nb), dtype=np.uint8, chunks=chunks, compression="gzip",
                              compression_opts=GZIP_LEVEL, fletcher32=True)
    ds.attrs["Lx"] = Lx
    ds.attrs["Ly"] = Ly
    ds.attrs["tile"] = tile
    ds.attrs["description"] = f"{Lx}x{Ly} spins, bit-packed along rows ({SPIN_ENCODING}); chunks of {chunks}"
    for k, v in (attrs or {}).items():
        ds.attrs[k] = v
    return ds


class PackedTarget:
    """A ``dask.array.store`` target: ``target[rows, cols] = int8 block`` packs and writes the block.

    ``cols.start`` must be a multiple of 8, and the block must end at a multiple of 8 or at the last
    column (so that no byte is shared by two blocks). Writes are serialised by a lock (h5py is not
    thread-parallel anyway); ``on_block`` (optional) is called after each block, e.g. a progress bar.
    """

    def __init__(self, dataset, *, on_block=None):
        self.ds = dataset
        self.Lx = int(dataset.attrs["Lx"])
        self.Ly = int(dataset.attrs["Ly"])
        self.shape = (self.Lx, self.Ly)
        self.dtype = np.dtype(np.int8)
        self.ndim = 2
        self.on_block = on_block
        self.lock = threading.Lock()

    def __setitem__(self, key, block):
        rows, cols = _slices(key, self.shape)
        block = np.asarray(block)
        if cols.start % 8 or (cols.stop % 8 and cols.stop != self.Ly):
            raise ValueError(f"blocks of a packed lattice must start and end on a multiple of 8 columns "
                             f"(or end at Ly={self.Ly}); got columns {cols.start}:{cols.stop}")
        if block.shape != (rows.stop - rows.start, cols.stop - cols.start):
            raise ValueError(f"block of shape {block.shape} does not fit rows {rows} and columns {cols}")
        if not np.all((block == 1) | (block == -1)):
            raise ValueError("spins must contain only the values +1 and -1")
        packed = np.packbits(block > 0, axis=-1, bitorder="big")
        with self.lock:
            self.ds[rows.start:rows.stop, cols.start // 8:cols.start // 8 + packed.shape[1]] = packed
        if self.on_block is not None:
            self.on_block(block)


def _slices(key, shape):
    if not isinstance(key, tuple):
        key = (key,)
    if len(key) == 1:
        key = key + (slice(None),)
    if len(key) != 2:
        raise IndexError(f"a lattice takes two indices (rows, columns), got {len(key)}")
    out = []
    for k, n in zip(key, shape):
        if isinstance(k, (int, np.integer)):
            k = int(k) % n
            k = slice(k, k + 1)
        if not isinstance(k, slice):
            raise IndexError(f"a lattice is indexed by slices (or integers), got {k!r}")
        start, stop, step = k.indices(n)
        if step != 1:
            raise IndexError("a lattice is indexed by slices of step 1")
        out.append(slice(start, max(start, stop)))
    return tuple(out)


class GiantLattice:
    """Lazy reader of one packed lattice dataset (``/spins`` or ``/stages/<t>``) of a giant-lattice file.

    ``lat[r0:r1, c0:c1]`` reads only the stored chunks it touches and returns int8 +-1 of that shape
    (integers select one row / column but keep two axes). ``shape``, ``dtype`` (int8) and ``ndim``
    let ``dask.array.from_array`` use it directly. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, path_or_file, dataset: str = "spins"):
        import h5py

        if isinstance(path_or_file, h5py.File):
            self.file, self._own = path_or_file, False
        else:
            # a chunk cache that holds two rows of tiles (row-by-row readers reuse decompressed chunks)
            self.file, self._own = h5py.File(path_or_file, "r", rdcc_nbytes=CHUNK_CACHE_BYTES, rdcc_nslots=100_003), True
        try:
            fmt = self.file.attrs.get("format")
            fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
            if fmt != FORMAT:
                raise GiantFormatError(f"{self.file.filename} is not a giant-lattice file (format={fmt!r}, "
                                       f"expected {FORMAT!r})")
            version = int(self.file.attrs.get("format_version", 0))
            if version > FORMAT_VERSION:
                raise GiantFormatError(f"{self.file.filename} has format_version {version}; this isingcore reads "
                                       f"versions <= {FORMAT_VERSION}")
            if dataset not in self.file:
                raise GiantFormatError(f"{self.file.filename} has no dataset {dataset!r}")
            self.ds = self.file[dataset]
            self.Lx = int(self.ds.attrs["Lx"])
            self.Ly = int(self.ds.attrs["Ly"])
        except Exception:
            if self._own:
                self.file.close()
            raise
        self.shape = (self.Lx, self.Ly)
        self.dtype = np.dtype(np.int8)
        self.ndim = 2
        self.size = self.Lx * self.Ly
        self.tile = int(self.ds.attrs.get("tile", self.ds.chunks[0]))
        self.attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in self.file.attrs.items()}
        self.lattice_attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in self.ds.attrs.items()}
        self._lock = threading.Lock()

    def __getitem__(self, key):
        from .io import _UNPACK_TABLE

        rows, cols = _slices(key, self.shape)
        b0, b1 = cols.start // 8, -(-cols.stop // 8)
        with self._lock:
            p = self.ds[rows.start:rows.stop, b0:b1] if cols.stop > cols.start else None
        if p is None or rows.stop == rows.start:
            return np.empty((rows.stop - rows.start, cols.stop - cols.start), np.int8)
        out = _UNPACK_TABLE[p].reshape(p.shape[0], 8 * p.shape[1])
        o = cols.start - 8 * b0
        return np.ascontiguousarray(out[:, o:o + cols.stop - cols.start])

    def __array__(self, dtype=None, copy=None):
        a = self[:, :]
        return a if dtype is None else a.astype(dtype)

    def to_dask(self, chunks=None):
        """A ``dask.array`` view (int8), chunks of ``tile`` rows and columns unless given."""
        import dask.array as da

        return da.from_array(self, chunks=chunks or (self.tile, self.tile), asarray=False, lock=False,
                             name=f"giant-{os.path.abspath(self.file.filename)}-{self.ds.name}", meta=np.empty((0, 0), np.int8))

    def tiles(self, tile: int | None = None, *, rows: bool = False):
        """Yield ``(x0, y0, block)`` over the lattice in tiles of ``tile`` (default: the stored tile size).

        ``rows=True``: full-width bands of ``tile`` rows instead (``y0 = 0``).
        """
        t = int(tile or self.tile)
        if t < 1:
            raise ValueError(f"tile must be a positive integer, got {tile!r}")
        for x0 in range(0, self.Lx, t):
            if rows:
                yield x0, 0, self[x0:x0 + t, :]
                continue
            for y0 in range(0, self.Ly, t):
                yield x0, y0, self[x0:x0 + t, y0:y0 + t]

    def close(self):
        if self._own:
            self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"GiantLattice({self.file.filename!r}, {self.ds.name!r}, {self.Lx}x{self.Ly}, tile={self.tile})"


def open_giant(path: str, dataset: str = "spins") -> GiantLattice:
    """Open the lattice ``dataset`` (default the final ``/spins``) of a giant-lattice file lazily."""
    return GiantLattice(path, dataset)


def write_giant(path: str, spins, *, tile: int, attrs: dict | None = None, overwrite: bool = False) -> str:
    """Write one in-memory lattice ``(Lx, Ly)`` (+-1) as a giant-lattice file with ``/spins`` (small lattices, tests)."""
    s = np.asarray(spins)
    if s.ndim != 2:
        raise ValueError(f"spins must have shape (Lx, Ly), got {s.shape}")
    with create_file(path, attrs, overwrite=overwrite) as f:
        ds = create_lattice(f, "spins", s.shape, tile=tile)
        t = PackedTarget(ds)
        for x0 in range(0, s.shape[0], tile):
            for y0 in range(0, s.shape[1], tile):
                t[x0:x0 + tile, y0:y0 + tile] = s[x0:x0 + tile, y0:y0 + tile]
    return path


__all__ = ["FORMAT", "FORMAT_VERSION", "GiantLattice", "GiantFormatError", "PackedTarget", "create_file",
           "create_lattice", "open_giant", "write_giant"]
