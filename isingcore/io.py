"""HDF5 ensembles of 2D Ising configurations: the ``isingcore-ensemble`` format, version 1.

The normative description of the file layout is ``docs/FORMAT.md``; this module is the
reference writer and reader. In short, one file holds ``n`` configurations of one
``Lx x Ly`` periodic lattice at one set of couplings:

``/spins``                   uint8 ``(n, Lx, ceil(Ly/8))``, ``np.packbits`` of ``s > 0`` along the
                             last axis (big-endian bit order, zero padding bits), gzip, fletcher32
``/observables/<name>``      float64 ``(n,)``; always ``energy`` and ``magnetization`` (per site)
``/chain``                   int32 ``(n,)``, the chain (RNG stream) that produced each configuration
``/step``                    int64 ``(n,)``, that chain's update counter right after it was taken
``/committed``               int64 scalar: only rows ``[0, committed)`` are valid

plus self-describing root attributes (``format``, ``format_version``, the physics parameters,
provenance). Example::

    from isingcore.io import EnsembleWriter, open_ensemble

    attrs = dict(algorithm="wolff", beta=0.44068679350977151, Lx=64, Ly=64, seed=1,
                 thermalization=1000, spacing=10, backend="numpy")
    with EnsembleWriter.create("run.h5", attrs) as w:
        w.append(spins, None, chain=0, step=1010)        # spins: int8 (B, 64, 64), values +-1

    with open_ensemble("run.h5") as ens:
        len(ens), ens[0], ens[10:20], ens.observables["energy"], ens.attrs["beta"]

Crash safety (details and the evidence in ``docs/FORMAT.md``): the writer keeps the file in
HDF5 single-writer/multiple-reader (SWMR) mode, whose ordered metadata writes keep the file
readable whenever the writer process dies, and publishes a new configuration count in
``/committed`` only after the data it covers has been flushed. The 1-d series carry no checksum
filter: their partly filled chunk is rewritten in place by every append, and a checksum would let a
write torn by the kill (a page boundary) spoil the committed rows in it (older files that have one
are read and recovered around such a chunk). :meth:`EnsembleWriter.resume`
continues a file after a clean close in place, and after a crash by first copying its
committed prefix into a fresh file that atomically replaces the old one.
"""

from __future__ import annotations

import copy
import errno
import json
import math
import numbers
import os
import re
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any, NamedTuple

import h5py
import numpy as np

from ._array import to_numpy

try:  # POSIX advisory locks; absent on Windows, where concurrent-writer detection is skipped
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "SPIN_ENCODING",
    "REQUIRED_ATTRS",
    "EnsembleFormatError",
    "EnsembleBusyError",
    "ChainState",
    "EnsembleWriter",
    "Ensemble",
    "open_ensemble",
    "join_ensembles",
    "pack_spins",
    "unpack_spins",
]

FORMAT_NAME = "isingcore-ensemble"
FORMAT_VERSION = 1
SPIN_ENCODING = (
    "packbits-big-endian: /spins[i, x, k] holds spins (x, 8k) .. (x, 8k+7), the first in the most "
    "significant bit; bit 1 = spin +1, bit 0 = spin -1; the last byte of a row is padded with "
    "zero bits when Ly is not a multiple of 8"
)

#: Root attributes the caller supplies to :meth:`EnsembleWriter.create`, with their meaning.
REQUIRED_ATTRS = {
    "algorithm": "name of the sampler or generator, e.g. 'metropolis', 'wolff', 'irg'",
    "beta": "inverse temperature (dimensionless coupling K = beta * J)",
    "J": "nearest-neighbour coupling (default 1.0)",
    "h": "external field (default 0.0)",
    "Lx": "lattice extent along axis -2 (rows)",
    "Ly": "lattice extent along axis -1 (columns)",
    "seed": "RNG seed (Philox4x32-10 key word 0)",
    "thermalization": "sweeps (or stage equivalents) discarded before the first stored configuration",
    "spacing": "sweeps between consecutive stored configurations of one chain",
    "backend": "array backend that ran the simulation ('numpy', 'cupy', ...)",
}
_ATTR_DEFAULTS = {"J": 1.0, "h": 0.0}
_WRITER_ATTRS = (
    "format",
    "format_version",
    "isingcore_version",
    "h5py_version",
    "hdf5_version",
    "created",
    "spin_encoding",
    "recoveries",
    "uuid",
    "parts",
)
_STR_ATTRS = ("algorithm", "backend")
_FLOAT_ATTRS = ("beta", "J", "h")
_INT_ATTRS = ("Lx", "Ly", "seed", "thermalization", "spacing")

_OBS_REQUIRED = ("energy", "magnetization")
_OBS_DESCRIPTIONS = {
    "energy": "energy per site, E/N with E = -J sum_{x,y} s(x,y) [s(x+1,y) + s(x,y+1)] - h sum s, "
    "periodic boundaries, N = Lx*Ly",
    "magnetization": "signed magnetization per site, M/N = sum s / N",
}
_SERIES_CHUNK = 256  # elements per chunk of the 1-D series
# Storage filters of the 1-D series: none. A series chunk that holds committed rows is rewritten in
# place by every later append into it (HDF5 writes whole chunks), and SIGKILL can tear a write at a
# page boundary (the kernel stops a pwrite between pages when a fatal signal arrives). Without a
# checksum, a torn write changes only bytes past the commit count (the committed bytes are rewritten
# with the values they already hold); with Fletcher-32 (what older writers put on the series) the
# whole chunk, committed rows included, fails its checksum. See _read_series for those files.
_SERIES_FILTERS: dict[str, Any] = {}
_LIBVER = ("v110", "v110")  # superblock v3: needed for SWMR; readable by HDF5 >= 1.10
_SUPERBLOCK_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_SB_WRITE_ACCESS = 0x01  # file consistency flags of superblock versions >= 3
_SB_SWMR_WRITE_ACCESS = 0x04
_TMP_SUFFIX = ".isingcore-tmp"
_NAME_RE = re.compile(r"^[^/\x00.][^/\x00]*$")
_LOCK_ERROR = re.compile(r"\block(ing)?\b")  # HDF5's "unable to lock file", "file locking flag values"


class EnsembleFormatError(ValueError):
    """A file is not a readable isingcore ensemble (not HDF5, wrong format, too new, damaged).

    The message names the path and what is wrong.
    """


class EnsembleBusyError(RuntimeError):
    """Another process holds the ensemble file (a live writer, or an HDF5 reader with locking)."""


class ChainState(NamedTuple):
    """Where one chain stopped: its last stored configuration, the counter after it, and how many
    configurations of the chain the file holds."""

    spins: np.ndarray  # int8 (Lx, Ly), values +-1
    step: int
    count: int


# --------------------------------------------------------------------------------------------
# Bit packing and per-configuration observables
# --------------------------------------------------------------------------------------------

# _UNPACK_TABLE[b] = the 8 spins of byte b, most significant bit first
_UNPACK_TABLE = (np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).astype(np.int8) * 2 - 1).astype(
    np.int8
)


def pack_spins(spins: Any) -> np.ndarray:
    """Pack +-1 spins into bits along the last axis.

    ``spins`` has shape ``(..., Lx, Ly)`` and values +-1 (any numeric dtype, any supported
    backend; the result is always NumPy). Returns uint8 of shape ``(..., Lx, ceil(Ly/8))`` equal to
    ``np.packbits(spins > 0, axis=-1, bitorder="big")``: bit 1 means spin +1, the spin with the
    smallest column index sits in the most significant bit, and a row whose length is not a
    multiple of 8 ends in zero padding bits. Inverse: :func:`unpack_spins`.
    """
    s = to_numpy(spins)
    if s.ndim < 1:
        raise ValueError(f"spins must have at least one axis (shape (..., Lx, Ly)); got shape {s.shape}")
    if not np.all((s == 1) | (s == -1)):
        raise ValueError("spins must contain only the values +1 and -1")
    return np.packbits(s > 0, axis=-1, bitorder="big")


def unpack_spins(packed: Any, Ly: int) -> np.ndarray:
    """Inverse of :func:`pack_spins`: uint8 ``(..., Lx, ceil(Ly/8))`` -> int8 ``(..., Lx, Ly)``, +-1.

    Padding bits beyond column ``Ly`` are ignored.
    """
    p = to_numpy(packed)
    if p.dtype != np.uint8:
        raise ValueError(f"packed must have dtype uint8; got {p.dtype}")
    if isinstance(Ly, bool) or not isinstance(Ly, numbers.Integral) or Ly < 1:
        raise ValueError(f"Ly must be a positive integer; got {Ly!r}")
    Ly = int(Ly)
    nbytes = -(-Ly // 8)
    if p.ndim < 1 or p.shape[-1] != nbytes:
        raise ValueError(f"packed must have last axis ceil(Ly/8) = {nbytes} for Ly={Ly}; got shape {p.shape}")
    out = _UNPACK_TABLE[p].reshape(*p.shape[:-1], nbytes * 8)
    if nbytes * 8 != Ly:
        out = np.ascontiguousarray(out[..., :Ly])
    return out


def _energy_magnetization(spins: Any, J: float = 1.0, h: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Energy and magnetization per site of configurations ``(..., Lx, Ly)`` on the periodic lattice.

    ``e = E/N`` with ``E = -J sum_{x,y} s(x,y) [s(x+1,y) + s(x,y+1)] - h sum_{x,y} s(x,y)`` (each of
    the ``2N`` bonds of the torus counted once, indices modulo the lattice size) and
    ``m = sum s / N``, ``N = Lx * Ly``. Sums are exact integers (int64); the result is float64 of
    shape ``(...)``. These are the definitions stored in ``/observables/energy`` and
    ``/observables/magnetization``.
    """
    s = to_numpy(spins)
    if s.ndim < 2:
        raise ValueError(f"spins must have shape (..., Lx, Ly); got shape {s.shape}")
    s = s.astype(np.int8, copy=False)
    n_sites = s.shape[-1] * s.shape[-2]
    bonds = np.sum(s * np.roll(s, -1, axis=-2), axis=(-2, -1), dtype=np.int64)
    bonds += np.sum(s * np.roll(s, -1, axis=-1), axis=(-2, -1), dtype=np.int64)
    mag = np.sum(s, axis=(-2, -1), dtype=np.int64)
    energy = (-float(J) * bonds.astype(np.float64) - float(h) * mag.astype(np.float64)) / n_sites
    return energy, mag.astype(np.float64) / n_sites


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def _as_int(name: str, value: Any, minimum: int = 0, maximum: int = 2**63 - 1) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise ValueError(f"{name} must be an integer in [{minimum}, {maximum}]; got {value!r}")
    v = int(value)
    if not minimum <= v <= maximum:
        raise ValueError(f"{name} must be an integer in [{minimum}, {maximum}]; got {v}")
    return v


def _as_float(name: str, value: Any, nonnegative: bool = False) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise ValueError(f"{name} must be a finite real number; got {value!r}")
    v = float(value)
    if not math.isfinite(v) or (nonnegative and v < 0):
        what = "a finite real number >= 0" if nonnegative else "a finite real number"
        raise ValueError(f"{name} must be {what}; got {v}")
    return v


def _validate_attrs(attrs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check the caller's attributes; return (typed attributes, extra dict)."""
    if not isinstance(attrs, Mapping):
        raise ValueError(f"attrs must be a mapping (dict); got {type(attrs).__name__}")
    reserved = sorted(k for k in attrs if k in _WRITER_ATTRS)
    if reserved:
        raise ValueError(f"attrs must not contain {reserved}: the writer sets these itself")
    allowed = set(REQUIRED_ATTRS) | {"extra"}
    unknown = sorted(str(k) for k in attrs if k not in allowed)
    if unknown:
        raise ValueError(
            f"attrs has unknown keys {unknown}; allowed keys: {sorted(allowed)} "
            "(put anything else into attrs['extra'], a JSON-serializable dict)"
        )
    merged = {**_ATTR_DEFAULTS, **{k: v for k, v in attrs.items() if k != "extra"}}
    missing = [k for k in REQUIRED_ATTRS if k not in merged]
    if missing:
        raise ValueError(
            f"attrs is missing required keys {missing}; "
            + "; ".join(f"{k}: {REQUIRED_ATTRS[k]}" for k in missing)
        )
    out: dict[str, Any] = {}
    for k in _STR_ATTRS:
        v = merged[k]
        if not isinstance(v, str) or not v:
            raise ValueError(f"attrs[{k!r}] must be a non-empty string; got {v!r}")
        out[k] = v
    for k in _FLOAT_ATTRS:
        out[k] = _as_float(f"attrs[{k!r}]", merged[k], nonnegative=(k == "beta"))
    out["Lx"] = _as_int("attrs['Lx']", merged["Lx"], 1, 2**31 - 1)
    out["Ly"] = _as_int("attrs['Ly']", merged["Ly"], 1, 2**31 - 1)
    for k in ("seed", "thermalization", "spacing"):
        out[k] = _as_int(f"attrs[{k!r}]", merged[k])
    extra = attrs.get("extra", {})
    if extra is None:
        extra = {}
    if not isinstance(extra, Mapping):
        raise ValueError(f"attrs['extra'] must be a JSON-serializable dict; got {type(extra).__name__}")
    try:
        json.dumps(dict(extra), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"attrs['extra'] must be JSON-serializable (no NaN/inf): {exc}") from exc
    return out, dict(extra)


def _validate_observable_names(observable_names: Any) -> dict[str, str]:
    """Return name -> description, with energy and magnetization always present."""
    if isinstance(observable_names, str):
        raise ValueError(
            "observable_names must be an iterable of names (or a mapping name -> description), not a string"
        )
    if isinstance(observable_names, Mapping):
        items = list(observable_names.items())
    else:
        items = [(name, "") for name in observable_names]
    out: dict[str, str] = {}
    for name, desc in items:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ValueError(
                f"observable_names: {name!r} is not a valid name (a non-empty string without '/' or NUL "
                "that does not start with '.')"
            )
        if name in out:
            raise ValueError(f"observable_names: {name!r} is given twice")
        if not isinstance(desc, str):
            raise ValueError(f"observable_names[{name!r}]: the description must be a string; got {desc!r}")
        out[name] = desc
    for name in _OBS_REQUIRED:
        if out.get(name):
            raise ValueError(
                f"observable_names[{name!r}]: '{name}' has a fixed meaning ({_OBS_DESCRIPTIONS[name]}); "
                "do not describe it"
            )
        out[name] = _OBS_DESCRIPTIONS[name]
    return out


def _host(value: Any) -> np.ndarray:
    """NumPy view/copy of an array of any supported backend, or of a Python scalar or list."""
    if isinstance(value, (numbers.Number, np.generic, list, tuple, np.ndarray)):
        return np.asarray(value)
    try:
        return to_numpy(value)
    except TypeError as exc:
        raise ValueError(
            f"expected an array (NumPy, CuPy, array-api-strict) or a list; got {type(value).__name__}"
        ) from exc


def _per_item(name: str, value: Any, B: int, dtype, maximum: int) -> np.ndarray:
    a = _host(value)
    if isinstance(value, (bool, np.bool_)) or a.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an integer or an integer array of shape ({B},); got {value!r}")
    if a.ndim == 0:
        a = np.full(B, a)
    if a.shape != (B,):
        raise ValueError(f"{name} must be a scalar or have shape ({B},) (one per configuration); got shape {a.shape}")
    if B and (a.min() < 0 or a.max() > maximum):
        raise ValueError(f"{name} values must lie in [0, {maximum}]; got min {a.min()}, max {a.max()}")
    return a.astype(dtype)


# --------------------------------------------------------------------------------------------
# Files, locks, superblock
# --------------------------------------------------------------------------------------------


class _Superblock(NamedTuple):
    offset: int
    version: int
    flags: int
    end: int | None  # absolute end-of-file address the superblock records (versions >= 2), else None
    size: int  # the file's actual size


def _superblock(path: str) -> _Superblock:
    """Locate and read the HDF5 superblock (file format spec: at byte 0 or 512 * 2**k)."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        offset = 0
        while offset + 12 <= size:
            fh.seek(offset)
            head = fh.read(48)
            if head[:8] == _SUPERBLOCK_SIGNATURE:
                version = head[8]
                end = None
                if version >= 2:  # signature, version, sizeof offsets, sizeof lengths, flags, addresses
                    flags = head[11]
                    so = head[9]
                    if so in (2, 4, 8) and len(head) >= 12 + 3 * so:
                        base = int.from_bytes(head[12 : 12 + so], "little")
                        end = base + int.from_bytes(head[12 + 2 * so : 12 + 3 * so], "little")
                elif len(head) >= 24:
                    flags = int.from_bytes(head[20:24], "little")
                else:
                    flags = 0
                return _Superblock(offset, version, flags, end, size)
            offset = 512 if offset == 0 else offset * 2
    raise EnsembleFormatError(f"{path}: not an HDF5 file (no HDF5 signature found; size {size} bytes)")


def _writer_alive(path: str) -> bool:
    """Whether a live EnsembleWriter holds ``path`` (its exclusive flock blocks a shared one)."""
    if fcntl is None:  # pragma: no cover - Windows: assume alive (skips checks meant for dead writers)
        return True
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # pragma: no cover - no flock on this file system
        return True
    finally:
        os.close(fd)
    return False


def _check_swmr_length(path: str, sb: _Superblock) -> None:
    """Refuse a file left by a dead SWMR writer that is shorter than its superblock says.

    HDF5 opens such files in SWMR-read mode without its end-of-file check and then retries every
    failing metadata read for minutes, so truncation must be caught here. A writer's flush
    records in the superblock an end of allocation that the file then reaches, and later data
    only grows the file, so a complete file is never shorter than the recorded end (observed on
    every SIGKILLed writer in the tests and in docs/FORMAT.md).
    """
    if sb.end is not None and sb.end > sb.size:
        raise EnsembleFormatError(
            f"{path}: the file is truncated: its HDF5 superblock records {sb.end} bytes but the file "
            f"has {sb.size}"
        )


def _lock(fd: int, path: str, what: str) -> None:
    """Take an exclusive advisory lock (flock) on ``fd`` without waiting."""
    if fcntl is None:  # pragma: no cover - Windows
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        raise EnsembleBusyError(
            f"{path}: cannot {what}: the file is held by a live EnsembleWriter or an HDF5 reader with "
            "file locking (in another process, or still open in this one); close it first"
        ) from exc
    except OSError as exc:  # pragma: no cover - file systems without flock (some Lustre mounts)
        if exc.errno not in (errno.ENOSYS, errno.ENOLCK, errno.EINVAL, errno.EOPNOTSUPP):
            raise


def _open_locked(path: str, what: str, flags: int = os.O_RDWR) -> int:
    fd = os.open(path, flags, 0o666)
    try:
        _lock(fd, path, what)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _fsync_dir(path: str) -> None:
    try:
        dfd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(dfd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(dfd)


def _tmp_name(path: str) -> str:
    d, base = os.path.split(os.path.abspath(path))
    return os.path.join(d, f".{base}.{os.getpid()}-{uuid.uuid4().hex[:8]}{_TMP_SUFFIX}")


def _remove_stale_tmp(path: str) -> None:
    """Remove temporary files left by writers of ``path`` that died while creating or recovering."""
    d, base = os.path.split(os.path.abspath(path))
    prefix = f".{base}."
    try:
        names = os.listdir(d)
    except OSError:  # pragma: no cover
        return
    for name in names:
        if not (name.startswith(prefix) and name.endswith(_TMP_SUFFIX)):
            continue
        p = os.path.join(d, name)
        try:
            fd = _open_locked(p, "remove a stale temporary file", os.O_RDONLY)
        except (OSError, EnsembleBusyError):
            continue  # in use (or gone): leave it
        try:
            os.unlink(p)
        except OSError:  # pragma: no cover
            pass
        finally:
            os.close(fd)


def _publish(tmp: str, path: str, overwrite: bool) -> None:
    """Give the finished temporary file ``tmp`` its final name ``path`` atomically."""
    if overwrite:
        os.replace(tmp, path)
    else:
        try:
            os.link(tmp, path)  # fails if path appeared meanwhile: an atomic "create if absent"
        except FileExistsError:
            raise
        except OSError:  # pragma: no cover - file systems without hard links
            if os.path.exists(path):
                raise FileExistsError(errno.EEXIST, "ensemble file exists", path) from None
            os.replace(tmp, path)
        else:
            os.unlink(tmp)
    _fsync_dir(path)


def _fapl(locking: bool):
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_V110, h5py.h5f.LIBVER_V110)
    fapl.set_file_locking(locking, True)
    return fapl


def _open_swmr_write(path: str) -> h5py.File:
    """Open an existing file straight into SWMR-write mode (no window of plain write access)."""
    fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDWR | h5py.h5f.ACC_SWMR_WRITE, fapl=_fapl(False))
    return h5py.File(fid)


def _open_read(path: str) -> tuple[h5py.File, bool]:
    """Open for reading, in SWMR-read mode when a (live or dead) SWMR writer marked the file."""
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "is a directory, not an ensemble file", path)
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, "no such ensemble file", path)
    sb = _superblock(path)
    swmr = sb.version >= 3 and bool(sb.flags & _SB_SWMR_WRITE_ACCESS)
    if swmr and not _writer_alive(path):
        _check_swmr_length(path, sb)
    if sb.version >= 3 and (sb.flags & _SB_WRITE_ACCESS) and not swmr:
        raise EnsembleFormatError(
            f"{path}: the HDF5 superblock says the file is open for writing by a non-SWMR writer (or "
            "one that died); isingcore never leaves files in this state. If no process is writing it, "
            "'h5clear -s' clears the flag, but the file may be inconsistent."
        )
    try:
        try:
            return h5py.File(path, "r", swmr=swmr), swmr
        except OSError as exc:
            # A live isingcore writer holds an flock that blocks HDF5's own lock, and a file already
            # open in this process must be reopened with the same locking setting: retry unlocked,
            # in SWMR-read mode (a writer is active, possibly just switching to SWMR).
            if not (isinstance(exc, BlockingIOError) or _LOCK_ERROR.search(str(exc))):
                raise
            swmr = swmr or sb.version >= 3
            return h5py.File(path, "r", swmr=swmr, locking=False), swmr
    except OSError as exc:
        hint = ""
        if "truncated" in str(exc) or "eof" in str(exc).lower():
            hint = " (the file is truncated: it is shorter than its own HDF5 superblock says)"
        raise EnsembleFormatError(
            f"{path}: cannot be opened as HDF5{hint}; it may be truncated or corrupted. HDF5 says: {exc}"
        ) from exc


# --------------------------------------------------------------------------------------------
# Structure: creation and checks shared by writer, resume, recovery and reader
# --------------------------------------------------------------------------------------------


def _decode_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


class _Header(NamedTuple):
    n: int
    Lx: int
    Ly: int
    attrs: dict
    observables: tuple


def _read_header(f: h5py.File, path: str, n: int | None = None) -> _Header:
    """Check that ``f`` is a readable isingcore ensemble; return its committed length and shape.

    ``/committed`` is read before any other dataset is opened (unless ``n``, a committed count
    read earlier, is given): a live writer flushes data and dataset extents before it raises the
    count, so extents read afterwards always cover it.
    """
    try:
        raw = {k: _decode_attr(v) for k, v in f.attrs.items()}
    except (OSError, KeyError, RuntimeError) as exc:
        raise EnsembleFormatError(f"{path}: cannot read root attributes (damaged file?): {exc}") from exc
    fmt = raw.get("format")
    if fmt != FORMAT_NAME:
        raise EnsembleFormatError(
            f"{path}: an HDF5 file but not an isingcore ensemble (root attribute 'format' is "
            f"{fmt!r}, expected {FORMAT_NAME!r})"
        )
    version = raw.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise EnsembleFormatError(
            f"{path}: invalid root attribute format_version={version!r} (expected an integer >= 1)"
        )
    if version > FORMAT_VERSION:
        raise EnsembleFormatError(
            f"{path}: written in {FORMAT_NAME} format_version {version} (by isingcore "
            f"{raw.get('isingcore_version', '?')}); this isingcore reads versions <= {FORMAT_VERSION}: "
            "upgrade isingcore"
        )
    missing = [k for k in (*REQUIRED_ATTRS, "extra") if k not in raw]
    if missing:
        raise EnsembleFormatError(f"{path}: root attributes {missing} are missing")
    for k in ("Lx", "Ly"):
        if isinstance(raw[k], bool) or not isinstance(raw[k], int) or raw[k] < 1:
            raise EnsembleFormatError(f"{path}: root attribute {k}={raw[k]!r} is not a positive integer")
    for k in ("extra", "recoveries", "parts"):
        if k in raw:
            try:
                raw[k] = json.loads(raw[k])
            except (TypeError, ValueError) as exc:
                raise EnsembleFormatError(f"{path}: root attribute {k!r} is not valid JSON: {exc}") from exc
    Lx, Ly = raw["Lx"], raw["Ly"]
    try:
        committed = f["committed"]
    except (KeyError, OSError, RuntimeError) as exc:
        raise EnsembleFormatError(f"{path}: the dataset /committed is missing or unreadable: {exc}") from exc
    if not isinstance(committed, h5py.Dataset) or committed.shape != () or committed.dtype.kind != "i":
        raise EnsembleFormatError(f"{path}: /committed must be a scalar integer dataset")
    if n is None:
        try:
            n = int(committed[()])
        except (OSError, RuntimeError) as exc:
            raise EnsembleFormatError(f"{path}: cannot read /committed (damaged file?): {exc}") from exc
    try:
        spins = f["spins"]
        chain = f["chain"]
        step = f["step"]
        obs_group = f["observables"]
        obs = {name: obs_group[name] for name in obs_group}
    except (KeyError, OSError, RuntimeError) as exc:
        raise EnsembleFormatError(f"{path}: a required dataset is missing or unreadable: {exc}") from exc
    if not isinstance(spins, h5py.Dataset) or spins.dtype != np.uint8 or spins.ndim != 3:
        raise EnsembleFormatError(f"{path}: /spins must be a 3-d uint8 dataset")
    if spins.shape[1:] != (Lx, -(-Ly // 8)):
        raise EnsembleFormatError(
            f"{path}: /spins has shape {spins.shape}, inconsistent with Lx={Lx}, Ly={Ly} "
            f"(expected (n, {Lx}, {-(-Ly // 8)}))"
        )
    series = [("chain", chain, "i"), ("step", step, "i")] + [(f"observables/{k}", v, "f") for k, v in obs.items()]
    for name, ds, kind in series:
        if not isinstance(ds, h5py.Dataset) or ds.ndim != 1 or ds.dtype.kind != kind:
            raise EnsembleFormatError(f"{path}: /{name} must be a 1-d {'integer' if kind == 'i' else 'float'} dataset")
    for name in _OBS_REQUIRED:
        if name not in obs:
            raise EnsembleFormatError(f"{path}: /observables/{name} is missing")
    lengths = {"spins": spins.shape[0], "chain": chain.shape[0], "step": step.shape[0]}
    lengths.update({f"observables/{k}": v.shape[0] for k, v in obs.items()})
    short = {k: v for k, v in lengths.items() if v < n}
    if n < 0 or short:
        raise EnsembleFormatError(f"{path}: /committed = {n} but datasets are shorter: {short} (damaged file)")
    datasets = {"spins": spins, "chain": chain, "step": step, **{f"observables/{k}": v for k, v in obs.items()}}
    if any(ds.is_virtual for ds in datasets.values()):
        _check_parts(path, raw, datasets)
    return _Header(n, Lx, Ly, raw, tuple(sorted(obs)))


def _part_path(path: str, name: str) -> str:
    """Where HDF5 finds the source file ``name`` of a virtual dataset in ``path`` (with
    HDF5_VDS_PREFIX unset): relative names are relative to the directory of ``path``."""
    return name if os.path.isabs(name) else os.path.join(os.path.dirname(os.path.abspath(path)), name)


def _check_parts(path: str, raw: dict, datasets: dict) -> None:
    """Check every part file of a joined ensemble (:func:`join_ensembles`).

    HDF5 reads the fill value, silently, wherever a source file of a virtual dataset is missing
    or unreadable; a joined ensemble is therefore only opened if every part exists, is the very
    file that was joined (its ``uuid``), was closed cleanly and holds the rows mapped from it.
    """
    parts = raw.get("parts")
    if not isinstance(parts, list) or not all(isinstance(p, dict) and "file" in p and "uuid" in p for p in parts):
        raise EnsembleFormatError(f"{path}: has virtual datasets but no valid 'parts' attribute listing their files")
    listed = {p["file"]: p for p in parts}
    need: dict[str, int] = {}
    for name, ds in datasets.items():
        if not ds.is_virtual:
            raise EnsembleFormatError(
                f"{path}: /{name} is not virtual, unlike the other datasets of this joined ensemble"
            )
        for m in ds.virtual_sources():
            if m.file_name not in listed or m.dset_name.lstrip("/") != name:
                raise EnsembleFormatError(
                    f"{path}: /{name} maps {m.file_name}:{m.dset_name}, which is not a part listed in 'parts'"
                )
            _, hi = m.src_space.get_select_bounds()
            need[m.file_name] = max(need.get(m.file_name, 0), int(hi[0]) + 1)
    for name, part in listed.items():
        full = _part_path(path, name)
        if not os.path.exists(full):
            raise EnsembleFormatError(
                f"{path}: its part {name!r} is missing (looked for {full}); a joined ensemble reads the "
                "configurations from its part files, which must stay at the same place relative to it"
            )
        sb = _superblock(full)
        if sb.flags:
            raise EnsembleFormatError(
                f"{path}: its part {full} is open for writing or its writer died; HDF5 would read fill values "
                "instead of its configurations"
            )
        try:
            with h5py.File(full, "r") as g:
                header = _read_header(g, full)
        except OSError as exc:
            raise EnsembleFormatError(f"{path}: its part {full} cannot be opened: {exc}") from exc
        if header.attrs.get("uuid") != part["uuid"]:
            raise EnsembleFormatError(
                f"{path}: its part {full} is not the file that was joined (uuid {header.attrs.get('uuid')!r}, "
                f"expected {part['uuid']!r})"
            )
        if header.n < need.get(name, 0):
            raise EnsembleFormatError(
                f"{path}: its part {full} holds {header.n} committed configurations, fewer than the {need[name]} mapped"
            )


def _checksum_only(ds: h5py.Dataset) -> bool:
    """Whether a 1-d chunked dataset's only filter is Fletcher-32 (the series of older writers)."""
    if ds.ndim != 1 or ds.chunks is None or ds.is_virtual:
        return False
    dcpl = ds.id.get_create_plist()
    return dcpl.get_nfilters() == 1 and dcpl.get_filter(0)[0] == h5py.h5z.FILTER_FLETCHER32


def _boundary_chunk(ds: h5py.Dataset, n: int) -> tuple[int, np.ndarray]:
    """Rows of the chunk that holds row ``n - 1``, decoded from its raw bytes without the checksum.

    Only for :func:`_checksum_only` series (raw chunk = the uncompressed values + 4 bytes of
    Fletcher-32). Returns (first row of the chunk, its values).
    """
    (size,) = ds.chunks
    first = (n - 1) // size * size
    mask, raw = ds.id.read_direct_chunk((first,))
    nbytes = size * ds.dtype.itemsize
    if mask != 0 or len(raw) != nbytes + 4:
        raise OSError(f"unexpected raw chunk (filter mask {mask}, {len(raw)} bytes, expected {nbytes + 4})")
    return first, np.frombuffer(raw, dtype=ds.dtype, count=size).astype(ds.dtype.newbyteorder("="))


def _read_series(ds: h5py.Dataset, index: int | slice, n: int) -> np.ndarray:
    """``ds[index]`` of a 1-d series for rows below the committed count ``n``.

    Files of older writers have Fletcher-32 on the series (see ``_SERIES_FILTERS``). There, a
    writer killed while it rewrote the chunk that holds the last committed rows (every append
    into a partly filled chunk rewrites it in place) can leave that chunk torn: its committed
    bytes are intact (they were rewritten with the values they held), the bytes after them and
    the checksum are a mix of the old and the new write, and HDF5 refuses the whole chunk. Only
    for that one chunk, the chunk holding row ``n - 1``, the committed rows are then decoded
    from the raw chunk without the checksum; a failing read anywhere else is raised. (A torn
    chunk is only possible while it holds uncommitted rows, so no other chunk can be torn.)
    """
    try:
        return ds[index]
    except (OSError, RuntimeError) as exc:
        if n <= 0 or not _checksum_only(ds):
            raise
        scalar = not isinstance(index, slice)
        if not scalar and index.step not in (None, 1):
            raise
        start, stop = (int(index), int(index) + 1) if scalar else index.indices(n)[:2]
        first = (n - 1) // ds.chunks[0] * ds.chunks[0]
        if stop <= first or stop > n:
            raise
        head = ds[start:first] if start < first else np.zeros(0, dtype=ds.dtype)
        try:
            _, rows = _boundary_chunk(ds, n)
        except (OSError, RuntimeError, ValueError):
            raise exc from None
        out = np.concatenate([head, rows[max(start, first) - first : stop - first]]).astype(ds.dtype)
        return out[0] if scalar else out


def _check_tail(f: h5py.File, n: int, path: str) -> None:
    """Read the last committed row of every dataset (catches truncation and chunk damage early)."""
    if n == 0:
        return
    try:
        f["spins"][n - 1]
        for name in ("chain", "step"):
            _read_series(f[name], n - 1, n)
        for ds in f["observables"].values():
            _read_series(ds, n - 1, n)
    except (OSError, RuntimeError, ValueError) as exc:
        raise EnsembleFormatError(
            f"{path}: the last committed configuration ({n - 1}) cannot be read; the file is truncated "
            f"or corrupted. HDF5 says: {exc}"
        ) from exc


def _create_layout(
    f: h5py.File, Lx: int, Ly: int, observables: Mapping[str, str], compression_level: int, n: int = 0
) -> None:
    """Create the datasets of an empty (or ``n``-row, to be filled) ensemble in a new file."""
    nb = -(-Ly // 8)
    sp = f.create_dataset(
        "spins",
        shape=(n, Lx, nb),
        maxshape=(None, Lx, nb),
        chunks=(1, Lx, nb),
        dtype=np.uint8,
        compression="gzip",
        compression_opts=compression_level,
        fletcher32=True,
    )
    sp.attrs["description"] = (
        "spin configurations, bit-packed along the last axis; see the root attribute spin_encoding"
    )
    series = dict(maxshape=(None,), chunks=(_SERIES_CHUNK,), **_SERIES_FILTERS)
    ch = f.create_dataset("chain", shape=(n,), dtype=np.int32, **series)
    ch.attrs["description"] = "index of the chain (RNG stream) that produced each configuration"
    st = f.create_dataset("step", shape=(n,), dtype=np.int64, **series)
    st.attrs["description"] = "the chain's RNG update counter right after the configuration was taken"
    g = f.create_group("observables")
    for name, desc in observables.items():
        ds = g.create_dataset(name, shape=(n,), dtype=np.float64, **series)
        ds.attrs["description"] = desc
    c = f.create_dataset("committed", data=np.int64(0))
    c.attrs["description"] = (
        "number of valid configurations: rows [0, committed) of every dataset; later rows are an "
        "unfinished append and must be ignored"
    )


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------


def _flush_policy(flush_every: Any, flush_interval: Any) -> tuple[int | None, float | None]:
    if flush_every is not None:
        flush_every = _as_int("flush_every", flush_every, 1)
    if flush_interval is not None:
        flush_interval = _as_float("flush_interval", flush_interval, nonnegative=True)
    return flush_every, flush_interval


class EnsembleWriter:
    """Append-only, crash-safe writer of an ``isingcore-ensemble`` file.

    Make one with :meth:`create` (new file) or :meth:`resume` (continue an existing one); use it
    as a context manager or call :meth:`close`. :meth:`append` adds a batch of configurations;
    :meth:`flush` commits everything appended so far. With the default policy
    (``flush_every=1``) every append is committed before it returns. Whatever moment the writer
    process dies at (even SIGKILL), the file opens with :func:`open_ensemble` and holds every
    committed configuration; :meth:`resume` continues it without duplicating or skipping any.

    Only one writer may hold a file (an advisory ``flock``, checked by :meth:`create` with
    ``overwrite=True`` and by :meth:`resume`). Readers may open the file while it is written.
    """

    def __init__(self, _file: h5py.File, _lock_fd: int | None, path: str, *, flush_every, flush_interval, fsync):
        """Internal: use :meth:`create` or :meth:`resume`."""
        self._f = _file
        self._lock_fd = _lock_fd
        self.path = path
        try:
            self.flush_every, self.flush_interval = _flush_policy(flush_every, flush_interval)
            self.fsync = bool(fsync)
            header = _read_header(_file, path)
        except BaseException:
            self._release()
            raise
        self._header = header
        self.Lx, self.Ly = header.Lx, header.Ly
        self._spins = _file["spins"]
        self._chain = _file["chain"]
        self._step = _file["step"]
        self._obs = {name: _file["observables"][name] for name in header.observables}
        self._committed_ds = _file["committed"]
        self._n = header.n
        self._committed = header.n
        self._last_flush = time.monotonic()
        self._closed = False
        # chain -> [row of its last configuration, step after it, number of configurations]
        self._last: dict[int, list[int]] = {}
        block = 1 << 20
        for a in range(0, header.n, block):
            b = min(a + block, header.n)
            ch = _read_series(self._chain, slice(a, b), header.n).astype(np.int64)
            st = _read_series(self._step, slice(a, b), header.n)
            rev_chains, rev_first = np.unique(ch[::-1], return_index=True)
            counts = np.unique(ch, return_counts=True)[1]
            for c, r, k in zip(rev_chains.tolist(), rev_first.tolist(), counts.tolist()):
                row = b - 1 - r
                prev = self._last.get(c)
                self._last[c] = [row, int(st[row - a]), k + (prev[2] if prev else 0)]

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        attrs: Mapping[str, Any],
        observable_names: Iterable[str] | Mapping[str, str] = (),
        overwrite: bool = False,
        *,
        compression_level: int = 4,
        flush_every: int | None = 1,
        flush_interval: float | None = None,
        fsync: bool = False,
    ) -> EnsembleWriter:
        """Create a new ensemble file and return its writer.

        Parameters
        ----------
        path
            The file to create. It appears atomically: the file is built under a temporary name
            in the same directory and renamed once its layout is complete, so a writer that dies
            during ``create`` leaves no file at ``path`` (and an existing file is replaced only
            then, with ``overwrite=True``).
        attrs
            The physics and provenance attributes :data:`REQUIRED_ATTRS` (``J`` and ``h``
            default to 1.0 and 0.0) and optionally ``extra``, a JSON-serializable dict for
            anything else. Other keys are an error.
        observable_names
            Names of per-configuration float64 series beyond ``energy`` and ``magnetization``
            (always present, per site), or a mapping name -> description.
        overwrite
            Replace an existing file at ``path`` (refused while another writer holds it).
        compression_level
            gzip level 0-9 of ``/spins``.
        flush_every, flush_interval
            Commit policy of :meth:`append`: commit when ``flush_every`` configurations are
            pending or ``flush_interval`` seconds have passed since the last commit (checked
            at each append); ``None`` disables that criterion. :meth:`close` always commits.
        fsync
            Also ``fsync`` the file at every commit (survives an operating-system crash or
            power loss more often; SIGKILL safety does not need it).
        """
        path = os.fspath(path)
        _flush_policy(flush_every, flush_interval)
        typed, extra = _validate_attrs(attrs)
        observables = _validate_observable_names(observable_names)
        level = _as_int("compression_level", compression_level, 0, 9)
        if os.path.isdir(path):
            raise IsADirectoryError(errno.EISDIR, "is a directory", path)
        old_fd = None
        if os.path.exists(path):
            if not overwrite:
                raise FileExistsError(errno.EEXIST, "ensemble file exists (pass overwrite=True to replace it)", path)
            old_fd = _open_locked(path, "overwrite it")
        tmp = _tmp_name(path)
        fd = None
        f = None
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            _lock(fd, tmp, "create it")
            f = h5py.File(tmp, "w", libver=_LIBVER, locking=False)
            import isingcore

            root = f.attrs
            root["format"] = FORMAT_NAME
            root["format_version"] = np.int64(FORMAT_VERSION)
            root["isingcore_version"] = str(isingcore.__version__)
            root["h5py_version"] = h5py.version.version
            root["hdf5_version"] = h5py.version.hdf5_version
            root["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
            root["spin_encoding"] = SPIN_ENCODING
            for k in _STR_ATTRS:
                root[k] = typed[k]
            for k in _FLOAT_ATTRS:
                root[k] = np.float64(typed[k])
            for k in _INT_ATTRS:
                root[k] = np.int64(typed[k])
            root["extra"] = json.dumps(extra, sort_keys=True, allow_nan=False)
            root["recoveries"] = "[]"
            root["uuid"] = str(uuid.uuid4())
            _create_layout(f, typed["Lx"], typed["Ly"], observables, level)
            f.flush()
            f.swmr_mode = True
            os.fsync(fd)
            _publish(tmp, path, overwrite)
        except BaseException:
            if f is not None:
                f.close()
            if fd is not None:
                os.close(fd)
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        finally:
            if old_fd is not None:
                os.close(old_fd)
        return cls(f, fd, path, flush_every=flush_every, flush_interval=flush_interval, fsync=fsync)

    @classmethod
    def resume(
        cls,
        path: str | os.PathLike,
        *,
        flush_every: int | None = 1,
        flush_interval: float | None = None,
        fsync: bool = False,
    ) -> EnsembleWriter:
        """Reopen an existing ensemble for appending; :meth:`last_state` says where each chain stopped.

        A cleanly closed file is reopened in place. A file whose writer died (its HDF5
        superblock still marks it as open for SWMR writing and no process holds its lock) is
        recovered first: its committed prefix is copied into a new file, which atomically
        replaces it (a dying ``resume`` leaves the old file intact); the root attribute
        ``recoveries`` records each recovery. Rows beyond ``/committed`` (an append that was
        never committed) are dropped, so the next :meth:`append` continues right after the
        last committed configuration. Raises :class:`EnsembleBusyError` while another process
        holds the file, :class:`EnsembleFormatError` if it is not a readable ensemble.
        """
        path = os.fspath(path)
        _flush_policy(flush_every, flush_interval)
        if not os.path.exists(path):
            raise FileNotFoundError(errno.ENOENT, "no such ensemble file", path)
        fd = _open_locked(path, "resume it")
        f = None
        try:
            _remove_stale_tmp(path)
            sb = _superblock(path)
            if sb.version < 3:
                raise EnsembleFormatError(
                    f"{path}: HDF5 superblock version {sb.version}; resuming needs the HDF5 1.10 file format "
                    "(superblock version >= 3), which isingcore writes"
                )
            if sb.flags & _SB_SWMR_WRITE_ACCESS:
                _check_swmr_length(path, sb)
                fd = _recover(path, fd)
            elif sb.flags & _SB_WRITE_ACCESS:
                raise EnsembleFormatError(
                    f"{path}: the HDF5 superblock says a non-SWMR writer has the file open (or died "
                    "with it open); isingcore cannot resume it safely"
                )
            try:
                f = _open_swmr_write(path)
            except OSError as exc:
                raise EnsembleFormatError(f"{path}: cannot be reopened for appending. HDF5 says: {exc}") from exc
            header = _read_header(f, path)
            if f["spins"].is_virtual:
                raise EnsembleFormatError(
                    f"{path}: a joined ensemble (virtual datasets) cannot be appended to; resume one of its parts"
                )
            _check_tail(f, header.n, path)
        except BaseException:
            if f is not None:
                f.close()
            os.close(fd)
            raise
        return cls(f, fd, path, flush_every=flush_every, flush_interval=flush_interval, fsync=fsync)

    # -- writing --------------------------------------------------------------------------------

    def append(self, spins: Any, observables: Mapping[str, Any] | None, chain: Any, step: Any) -> int:
        """Append a batch of configurations; return the number of configurations now in the file.

        Parameters
        ----------
        spins
            int8 array ``(B, Lx, Ly)`` with values +-1 (NumPy, CuPy or array-api-strict).
        observables
            Mapping name -> array ``(B,)`` for every name given to :meth:`create`.
            ``energy`` and ``magnetization`` may be omitted (or ``observables=None``): the writer
            computes them from the spins (definitions in ``docs/FORMAT.md`` section 4); values
            given must agree with those (relative tolerance 1e-6), which catches convention
            mistakes such as a total instead of a per-site energy.
        chain
            Chain (RNG stream) index of each configuration: an integer or an array ``(B,)``, in
            ``[0, 2**31 - 1]``.
        step
            That chain's update counter right after each configuration: an integer or an array
            ``(B,)``, ``>= 0``, strictly increasing per chain over the whole file.
        """
        self._check_open()
        try:
            s = _host(spins)
        except ValueError as exc:
            raise ValueError(f"spins: {exc}") from None
        if s.dtype != np.int8:
            raise ValueError(f"spins must have dtype int8 (values +-1); got {s.dtype}")
        if s.ndim != 3 or s.shape[1:] != (self.Lx, self.Ly):
            raise ValueError(
                f"spins must have shape (B, Lx, Ly) = (B, {self.Lx}, {self.Ly}); got {s.shape}"
                + (" (add a batch axis: spins[None])" if s.shape == (self.Lx, self.Ly) else "")
            )
        if not np.all((s == 1) | (s == -1)):
            raise ValueError("spins must contain only the values +1 and -1")
        B = s.shape[0]
        chains = _per_item("chain", chain, B, np.int32, 2**31 - 1)
        steps = _per_item("step", step, B, np.int64, 2**63 - 1)
        last_step = {}
        for c, st in zip(chains.tolist(), steps.tolist()):
            prev = last_step.get(c, self._last[c][1] if c in self._last else None)
            if prev is not None and st <= prev:
                raise ValueError(
                    f"step must increase strictly for each chain: chain {c} got step {st} after step {prev} "
                    "(duplicated or out-of-order configuration?)"
                )
            last_step[c] = st
        obs = self._observables(s, observables, B)
        if B == 0:
            return self._n
        packed = np.packbits(s > 0, axis=-1, bitorder="big")  # = pack_spins(s); values checked above
        n0, n1 = self._n, self._n + B
        targets = [(self._spins, packed), (self._chain, chains), (self._step, steps)]
        targets += [(self._obs[k], v) for k, v in obs.items()]
        for ds, data in targets:
            if ds.shape[0] < n1:
                ds.resize(n1, axis=0)
            ds[n0:n1] = data
        self._n = n1
        for i, (c, st) in enumerate(zip(chains.tolist(), steps.tolist())):
            prev = self._last.get(c)
            self._last[c] = [n0 + i, st, (prev[2] if prev else 0) + 1]
        pending = self._n - self._committed
        if (self.flush_every is not None and pending >= self.flush_every) or (
            self.flush_interval is not None and time.monotonic() - self._last_flush >= self.flush_interval
        ):
            self.flush()
        return self._n

    def _observables(self, s: np.ndarray, observables: Mapping[str, Any] | None, B: int) -> dict[str, np.ndarray]:
        if not isinstance(observables, (Mapping, type(None))):
            raise ValueError(f"observables must be a mapping name -> array of shape ({B},) or None")
        given = {} if observables is None else dict(observables)
        unknown = sorted(set(given) - set(self._obs))
        if unknown:
            raise ValueError(
                f"observables has names {unknown} that the file does not have; its observables: {sorted(self._obs)}"
            )
        energy, mag = _energy_magnetization(s, self._header.attrs["J"], self._header.attrs["h"])
        out = {}
        for name in self._obs:
            if name in _OBS_REQUIRED:
                computed = energy if name == "energy" else mag
                if name in given:
                    v = self._series(name, given[name], B)
                    scale = 2 * abs(self._header.attrs["J"]) + abs(self._header.attrs["h"]) if name == "energy" else 1.0
                    if not np.allclose(v, computed, rtol=1e-6, atol=1e-6 * max(scale, 1e-300)):
                        bad = int(np.argmax(~np.isclose(v, computed, rtol=1e-6, atol=1e-6 * max(scale, 1e-300))))
                        raise ValueError(
                            f"observables[{name!r}] disagrees with the spins: item {bad} is {v[bad]!r}, the spins "
                            f"give {computed[bad]!r} ({_OBS_DESCRIPTIONS[name]})"
                        )
                out[name] = computed
            else:
                if name not in given:
                    raise ValueError(f"observables is missing {name!r} (the file stores it for every configuration)")
                out[name] = self._series(name, given[name], B)
        return out

    @staticmethod
    def _series(name: str, value: Any, B: int) -> np.ndarray:
        try:
            a = _host(value)
        except ValueError as exc:
            raise ValueError(f"observables[{name!r}]: {exc}") from None
        if a.dtype.kind not in "iuf":
            raise ValueError(f"observables[{name!r}] must be a real numeric array of shape ({B},); got dtype {a.dtype}")
        if a.shape != (B,):
            raise ValueError(f"observables[{name!r}] must have shape ({B},); got {a.shape}")
        return a.astype(np.float64)

    def flush(self) -> int:
        """Commit every appended configuration; return the committed count.

        Order: flush all data and metadata, then write the new count to ``/committed`` and
        flush again; a reader (or a crash) therefore never sees a count covering unflushed data.
        """
        self._check_open()
        if self._n != self._committed:
            self._f.flush()
            if self.fsync and self._lock_fd is not None:
                os.fsync(self._lock_fd)
            self._committed_ds[()] = np.int64(self._n)
            self._f.flush()
            if self.fsync and self._lock_fd is not None:
                os.fsync(self._lock_fd)
            self._committed = self._n
        self._last_flush = time.monotonic()
        return self._committed

    def last_state(self) -> dict[int, ChainState]:
        """Chain index -> :class:`ChainState` (last spins int8 ``(Lx, Ly)``, step after them, count).

        Right after :meth:`resume` this describes the committed configurations; to continue a
        chain, restore its spins and counter and append configurations with larger steps.
        """
        self._check_open()
        out = {}
        for c in sorted(self._last):
            row, st, k = self._last[c]
            out[c] = ChainState(unpack_spins(self._spins[row], self.Ly), st, k)
        return out

    # -- bookkeeping ------------------------------------------------------------------------------

    @property
    def committed(self) -> int:
        """Number of committed configurations (what a reader or a crash would keep)."""
        return self._committed

    @property
    def attrs(self) -> dict:
        """The root attributes as a plain dict (``extra`` and ``recoveries`` decoded from JSON)."""
        return copy.deepcopy(self._header.attrs)

    @property
    def observable_names(self) -> tuple[str, ...]:
        """Names of the stored per-configuration series (sorted)."""
        return tuple(self._obs)

    def __len__(self) -> int:
        """Configurations appended so far (committed or pending)."""
        return self._n

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: the writer is closed")

    def _release(self) -> None:
        try:
            self._f.close()
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def close(self) -> None:
        """Commit pending configurations, close the file and release the lock (idempotent)."""
        if getattr(self, "_closed", True):
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._release()

    def __enter__(self) -> EnsembleWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self._n} configurations, {self._committed} committed"
        return f"<EnsembleWriter {self.path!r} {self.Lx}x{self.Ly}: {state}>"


def _recover(path: str, old_fd: int) -> int:
    """Copy the committed prefix of a file left by a dead SWMR writer into a fresh file.

    The new file replaces ``path`` atomically (``os.replace``); returns the lock fd of the new
    file (the old one is closed). The dead writer's file is only read, in SWMR-read mode, which
    is what HDF5 guarantees to be consistent at any moment of a writer's life.
    """
    try:
        src = h5py.File(path, "r", swmr=True, locking=False)
    except OSError as exc:
        raise EnsembleFormatError(
            f"{path}: the file of a dead writer cannot be opened for recovery. HDF5 says: {exc}"
        ) from exc
    tmp = _tmp_name(path)
    fd = None
    try:
        header = _read_header(src, path)
        _check_tail(src, header.n, path)
        n = header.n
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        _lock(fd, tmp, "recover it")
        sspins = src["spins"]
        level = sspins.compression_opts if sspins.compression == "gzip" else 4
        descriptions = {k: _decode_attr(src["observables"][k].attrs.get("description", "")) for k in header.observables}
        with h5py.File(tmp, "w", libver=_LIBVER, locking=False) as dst:
            for k, v in src.attrs.items():
                dst.attrs[k] = v
            recs = header.attrs.get("recoveries", [])
            recs = recs if isinstance(recs, list) else []
            recs.append(
                {
                    "time": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
                    "committed": n,
                    "dropped_uncommitted_rows": int(sspins.shape[0] - n),
                }
            )
            dst.attrs["recoveries"] = json.dumps(recs, sort_keys=True)
            _create_layout(dst, header.Lx, header.Ly, descriptions, level, n=n)
            dspins = dst["spins"]
            filters = ("compression", "compression_opts", "fletcher32", "shuffle")
            same = sspins.chunks == dspins.chunks and all(getattr(sspins, a) == getattr(dspins, a) for a in filters)
            if same:  # copy compressed chunks as they are (one configuration per chunk)
                for i in range(n):
                    mask, data = sspins.id.read_direct_chunk((i, 0, 0))
                    dspins.id.write_direct_chunk((i, 0, 0), data, mask)
            else:
                for a in range(0, n, 256):
                    dspins[a : min(n, a + 256)] = sspins[a : min(n, a + 256)]
            block = 1 << 20
            names = ["chain", "step"] + [f"observables/{k}" for k in header.observables]
            for name in names:
                for a in range(0, n, block):
                    dst[name][a : min(n, a + block)] = _read_series(src[name], slice(a, min(n, a + block)), n)
            dst["committed"][()] = np.int64(n)
        os.fsync(fd)
        os.replace(tmp, path)
        _fsync_dir(path)
    except BaseException:
        if fd is not None:
            os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        src.close()
    os.close(old_fd)
    return fd


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------


class _ObservableSeries(Mapping):
    """Lazy mapping name -> float64 series of the committed configurations (read on first access)."""

    def __init__(self, ens: Ensemble):
        self._ens = ens
        self._cache: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._ens._obs_names:
            raise KeyError(f"{name!r}; this ensemble has observables {list(self._ens._obs_names)}")
        if name not in self._cache:
            self._cache[name] = self._ens._read(f"observables/{name}", slice(0, len(self._ens)))
        return self._cache[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ens._obs_names)

    def __len__(self) -> int:
        return len(self._ens._obs_names)

    def __repr__(self) -> str:
        return f"<observables {list(self._ens._obs_names)} of {len(self._ens)} configurations>"


class Ensemble:
    """Read-only, lazy view of an ``isingcore-ensemble`` file; make one with :func:`open_ensemble`.

    ``len(ens)`` is the number of committed configurations. ``ens[i]`` gives an int8 ``(Lx, Ly)``
    array of +-1, ``ens[a:b]``, ``ens[[i, j, ...]]`` (any order, repeats allowed) or a boolean
    mask give int8 ``(k, Lx, Ly)``; only the requested configurations are read and unpacked.
    ``ens.attrs`` (plain dict), ``ens.observables`` (lazy mapping name -> float64 series),
    ``ens.chain`` and ``ens.step`` describe every configuration; :meth:`iter_blocks` walks the
    file in blocks. While a writer is still appending, :meth:`refresh` picks up new commits.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._f, self._swmr = _open_read(self.path)
        try:
            self._load_header()
        except BaseException:
            self._f.close()
            raise

    def _load_header(self, n: int | None = None) -> None:
        header = _read_header(self._f, self.path, n)
        _check_tail(self._f, header.n, self.path)
        self._header = header
        self._n = header.n
        self._obs_names = header.observables
        self._spins = self._f["spins"]
        self._cache: dict[str, np.ndarray] = {}
        self.observables = _ObservableSeries(self)

    # -- metadata ------------------------------------------------------------------------------------

    @property
    def attrs(self) -> dict:
        """Root attributes as a plain dict of Python values (``extra``/``recoveries`` decoded)."""
        return copy.deepcopy(self._header.attrs)

    @property
    def Lx(self) -> int:
        return self._header.Lx

    @property
    def Ly(self) -> int:
        return self._header.Ly

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(len(self), Lx, Ly)``: the shape of ``self[:]`` (never materialised by this call)."""
        return (self._n, self.Lx, self.Ly)

    @property
    def format_version(self) -> int:
        return self._header.attrs["format_version"]

    @property
    def chain(self) -> np.ndarray:
        """int32 ``(n,)``: chain index of each configuration."""
        if "chain" not in self._cache:
            self._cache["chain"] = self._read("chain", slice(0, self._n))
        return self._cache["chain"]

    @property
    def step(self) -> np.ndarray:
        """int64 ``(n,)``: the chain's update counter right after each configuration."""
        if "step" not in self._cache:
            self._cache["step"] = self._read("step", slice(0, self._n))
        return self._cache["step"]

    def __len__(self) -> int:
        return self._n

    # -- data ------------------------------------------------------------------------------------------

    def _read(self, name: str, index) -> np.ndarray:
        self._check_open()
        try:
            if name == "spins":
                return self._f[name][index]
            return _read_series(self._f[name], index, self._n)
        except (OSError, RuntimeError) as exc:
            raise EnsembleFormatError(
                f"{self.path}: cannot read /{name}[{index}]: the file is corrupted or truncated. HDF5 says: {exc}"
            ) from exc

    def _rows(self, key) -> tuple[np.ndarray | slice | int, bool]:
        """Normalise ``key`` to (int | slice with step 1 | int array, is_scalar)."""
        n = self._n
        if isinstance(key, (numbers.Integral, np.integer)) and not isinstance(key, (bool, np.bool_)):
            i = int(key)
            if not -n <= i < n:
                raise IndexError(f"configuration index {i} out of range for an ensemble of {n}")
            return i % n, True
        if isinstance(key, slice):
            start, stop, stride = key.indices(n)
            if stride == 1:
                return slice(start, max(start, stop)), False
            return np.arange(start, stop, stride, dtype=np.int64), False
        if isinstance(key, tuple):
            raise TypeError("an Ensemble is indexed by configuration only (ens[i], ens[a:b], ens[[i, j]]); "
                            "index the returned array for sites")
        idx = np.asarray(key)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise IndexError(f"a boolean mask must have shape ({n},); got {idx.shape}")
            return np.flatnonzero(idx), False
        if idx.dtype.kind not in "iu" or idx.ndim != 1:
            if idx.size == 0 and idx.ndim == 1:
                return np.zeros(0, dtype=np.int64), False
            raise TypeError(f"configuration indices must be an int, a slice or a 1-d integer list/array; got {key!r}")
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"configuration indices out of range for an ensemble of {n}")
        return idx % n if n else idx, False

    def read_packed(self, key) -> np.ndarray:
        """Like ``self[key]`` but returns the stored bit-packed uint8 rows (see :func:`unpack_spins`)."""
        rows, _ = self._rows(key)
        if isinstance(rows, np.ndarray):
            if rows.size == 0:
                return np.zeros((0, self.Lx, self._spins.shape[2]), dtype=np.uint8)
            uniq, inverse = np.unique(rows, return_inverse=True)
            return self._read("spins", uniq)[inverse]
        return self._read("spins", rows)

    def __getitem__(self, key) -> np.ndarray:
        return unpack_spins(self.read_packed(key), self.Ly)

    def iter_blocks(self, size: int, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Yield int8 arrays ``(k, Lx, Ly)`` of consecutive configurations, ``k <= size``.

        Covers ``[start, stop)`` (default: all committed configurations); block ``j`` holds
        configurations ``start + j*size`` onwards. Memory use is one block.
        """
        size = _as_int("size", size, 1)
        start, stop, _ = slice(start, stop).indices(self._n)
        for a in range(start, stop, size):
            yield self[a : min(a + size, stop)]

    def __iter__(self) -> Iterator[np.ndarray]:
        for block in self.iter_blocks(64):
            yield from block

    def refresh(self) -> int:
        """Pick up configurations committed by a writer since opening; return the new length."""
        self._check_open()
        if self._swmr:
            try:
                committed = self._f["committed"]
                committed.refresh()
                n = int(committed[()])  # first the count, then the extents that cover it
                for name in ("spins", "chain", "step"):
                    self._f[name].refresh()
                for ds in self._f["observables"].values():
                    ds.refresh()
            except (OSError, RuntimeError, KeyError) as exc:
                raise EnsembleFormatError(f"{self.path}: cannot refresh: {exc}") from exc
            self._load_header(n)
        return self._n

    # -- lifetime ----------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if not self._f.id.valid:
            raise ValueError(f"{self.path}: the ensemble is closed")

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._f.id.valid:
            self._f.close()

    def __enter__(self) -> Ensemble:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        if not self._f.id.valid:
            return f"<Ensemble {self.path!r} (closed)>"
        a = self._header.attrs
        return (
            f"<Ensemble {self.path!r}: {self._n} configurations of {self.Lx}x{self.Ly}, "
            f"algorithm={a['algorithm']!r}, beta={a['beta']!r}>"
        )


def open_ensemble(path: str | os.PathLike) -> Ensemble:
    """Open an ensemble file for reading (lazily); see :class:`Ensemble`.

    Raises ``FileNotFoundError`` if ``path`` does not exist and :class:`EnsembleFormatError`
    (a ``ValueError``) naming the path and the problem if it is not an HDF5 file, not an
    isingcore ensemble, of a newer format version, or truncated/corrupted. A file whose writer
    is still running (or died) is opened in HDF5 SWMR-read mode and shows its committed
    configurations.
    """
    return Ensemble(path)


# --------------------------------------------------------------------------------------------
# Joining files (one per Dask worker, say) without copying
# --------------------------------------------------------------------------------------------

_JOIN_MUST_AGREE = ("algorithm", "beta", "J", "h", "Lx", "Ly", "seed", "thermalization", "spacing", "backend")


def join_ensembles(parts: Iterable[str | os.PathLike], path: str | os.PathLike, overwrite: bool = False) -> str:
    """Join finished ensemble files into one ensemble of HDF5 virtual datasets; return ``path``.

    Meant for scale-out: every worker writes its own file (its own chains, the same seed), and
    the joined file presents them as one ensemble without copying a configuration: its
    ``/spins``, ``/chain``, ``/step`` and observables are virtual datasets that map the
    committed rows of each part, in the order given. The parts must have been closed cleanly,
    agree on every physics parameter (``algorithm, beta, J, h, Lx, Ly, seed, thermalization,
    spacing, backend``) and the observable names, and hold disjoint chain indices (the same
    chain of the same seed twice would be the same random numbers twice). The root attribute
    ``parts`` lists each part's file name (relative to ``path`` when possible), ``uuid`` and
    number of configurations; ``open_ensemble`` refuses the joined file if a part is missing
    or has been replaced. Keep the parts next to the joined file (move them together).
    """
    path = os.fspath(path)
    part_paths = [os.fspath(p) for p in parts]
    if not part_paths:
        raise ValueError("parts must name at least one ensemble file")
    if len({os.path.realpath(p) for p in part_paths}) != len(part_paths):
        raise ValueError("parts: a file is given twice")
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(errno.EEXIST, "ensemble file exists (pass overwrite=True to replace it)", path)
    out_dir = os.path.dirname(os.path.abspath(path))
    infos = []
    owner: dict[int, str] = {}
    for p in part_paths:
        if not os.path.exists(p):
            raise FileNotFoundError(errno.ENOENT, "no such ensemble file", p)
        if _superblock(p).flags:
            raise EnsembleFormatError(
                f"{p}: not closed cleanly (a writer has it open, or died); close it, or run "
                "EnsembleWriter.resume(path).close() after a crash, before joining"
            )
        with Ensemble(p) as ens:
            if ens._f["spins"].is_virtual:
                raise EnsembleFormatError(f"{p}: is itself a joined ensemble; join its parts instead")
            a = ens.attrs
            infos.append((p, a, len(ens), ens._obs_names, ens._f["spins"].shape))
            for c in np.unique(ens.chain).tolist():
                if c in owner:
                    raise ValueError(
                        f"parts: chain {c} occurs in both {owner[c]} and {p}; parts must hold disjoint chains"
                    )
                owner[c] = p
    p0, a0, _, obs0, _ = infos[0]
    for p, a, _, obs, _ in infos[1:]:
        diff = [k for k in _JOIN_MUST_AGREE if a[k] != a0[k]]
        if diff:
            what = ", ".join(f"{k} ({a[k]!r} vs {a0[k]!r})" for k in diff)
            raise ValueError(f"parts: {p} differs from {p0} in {what}")
        if obs != obs0:
            raise ValueError(f"parts: {p} has observables {list(obs)}, {p0} has {list(obs0)}")
    total = sum(info[2] for info in infos)

    def rel(p: str) -> str:
        try:
            return os.path.relpath(os.path.abspath(p), out_dir)
        except ValueError:  # pragma: no cover - another drive on Windows
            return os.path.abspath(p)

    old_fd = _open_locked(path, "overwrite it") if os.path.exists(path) else None
    tmp = _tmp_name(path)
    fd = None
    try:
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        _lock(fd, tmp, "create it")
        import isingcore

        with h5py.File(p0, "r") as src, h5py.File(tmp, "w", libver=_LIBVER, locking=False) as f:
            for k, v in src.attrs.items():
                f.attrs[k] = v
            f.attrs["isingcore_version"] = str(isingcore.__version__)
            f.attrs["h5py_version"] = h5py.version.version
            f.attrs["hdf5_version"] = h5py.version.hdf5_version
            f.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
            f.attrs["uuid"] = str(uuid.uuid4())
            f.attrs["recoveries"] = "[]"
            f.attrs["parts"] = json.dumps(
                [
                    {"file": rel(p), "uuid": a["uuid"], "configurations": n, "created": a["created"],
                     "recoveries": len(a.get("recoveries", []))}
                    for p, a, n, _, _ in infos
                ],
                sort_keys=True,
            )
            names = ["spins", "chain", "step"] + [f"observables/{k}" for k in obs0]
            f.create_group("observables")
            for name in names:
                sds = src[name]
                layout = h5py.VirtualLayout(shape=(total, *sds.shape[1:]), dtype=sds.dtype)
                row = 0
                for p, _, n, _, _ in infos:
                    with h5py.File(p, "r") as g:
                        shape = g[name].shape
                    if n:
                        layout[row : row + n] = h5py.VirtualSource(rel(p), name, shape=shape)[0:n]
                    row += n
                ds = f.create_virtual_dataset(name, layout)
                for k, v in sds.attrs.items():
                    ds.attrs[k] = v
            c = f.create_dataset("committed", data=np.int64(total))
            c.attrs["description"] = src["committed"].attrs.get("description", "")
        os.fsync(fd)
        _publish(tmp, path, overwrite)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        if fd is not None:
            os.close(fd)
        if old_fd is not None:
            os.close(old_fd)
    return path
