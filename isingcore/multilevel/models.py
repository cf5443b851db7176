"""Trained multilevel samplers: a manifest plus one ONNX network per learned level.

A model is a directory ``<name>/`` holding ``manifest.json`` and the network files it names
(shipped models: ``isingcore/models_onnx/multilevel/<name>/``; its ``README.md`` is the model
card). The manifest (``"format": "isingcore-multilevel-1"``)::

    {"format": "isingcore-multilevel-1", "name": "...", "size": L, "beta": beta, "coarsest": c,
     "coarsest_couplings": [K_nn, K_nnn], "scheme": "seed001" | "split",
     "levels": [{"index": 1, "kind": "diagonal", "grid": h, "coupling": K, "network": "level01.onnx"},
                ...,
                {"index": last, "kind": "axial", "grid": 1, "coupling": beta, "network": null}],
     "training": {...}}

A level with ``"network": null`` is a heat-bath level with its ``coupling``; the last level must be
the exact heat bath (``network`` null, ``coupling`` = beta), and so must a ``"decimated"`` level of
the ``"split"`` scheme (its exact conditional). Every level from 1 to the last is listed with the
kind and grid of :class:`~isingcore.multilevel.hierarchy.Hierarchy` of the manifest's ``scheme``
(absent: ``"seed001"``, the only scheme of the first models).

Network contract (opset >= 13, float32): input ``"embedded"`` of shape ``(B, 2, n + 2r, n + 2r)``,
the level's embedded coarser spins (:meth:`Hierarchy.embed`: channel 0 spins, 0 where unsampled;
channel 1 the sampled-site mask) on its ``n x n`` grid, padded periodically by the halo ``r``
(metadata ``isingcore.halo``); output ``"logit"`` of shape ``(B, 1, n, n)``: the log-odds
``ln q(s_v=+1)/q(s_v=-1)`` at every grid site, of which the sampler reads the level's sites. The
network must be odd in channel 0 (Z2 symmetry, ``logit(-x, m) = -logit(x, m)``); loading checks it.
Metadata: ``isingcore.format = multilevel-conditional-1``, ``isingcore.level``, ``isingcore.grid``,
``isingcore.kind``, ``isingcore.halo``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np

from .hierarchy import Hierarchy

FORMAT = "isingcore-multilevel-1"
NETWORK_FORMAT = "multilevel-conditional-1"


class MultilevelModelError(ValueError):
    """A multilevel model directory, manifest or network that does not meet the contract."""


def models_directory() -> str:
    """Where the shipped multilevel models live."""
    from .. import models_onnx

    return os.path.join(os.path.dirname(models_onnx.__file__), "multilevel")


@dataclasses.dataclass(frozen=True)
class Network:
    """One level's conditional network (serialized ONNX with its metadata)."""

    level: int
    grid: int
    kind: str
    halo: int
    metadata: dict
    data: bytes = dataclasses.field(repr=False)

    def session(self, backend: str = "numpy"):
        from ..onnx_runtime import open_session

        return open_session(self.data, backend)

    def run(self, session, embedded, xp):
        """Log-odds ``(B, 1, n, n)`` for the embedded input ``(B, 2, n, n)`` (periodic halo added here)."""
        from .._array import to_numpy

        r = self.halo
        x = to_numpy(embedded).astype(np.float32, copy=False)
        if r:
            x = np.pad(x, ((0, 0), (0, 0), (r, r), (r, r)), mode="wrap")
        (out,) = session.run(["logit"], {"embedded": np.ascontiguousarray(x)})
        n = embedded.shape[-1]
        if out.shape != (x.shape[0], 1, n, n):
            raise MultilevelModelError(f"network of level {self.level}: output shape {out.shape}, expected {(x.shape[0], 1, n, n)}")
        return xp.asarray(out)


@dataclasses.dataclass(frozen=True)
class MultilevelModel:
    name: str
    path: str
    size: int
    beta: float
    coarsest: int
    coarsest_couplings: tuple
    scheme: str
    couplings: np.ndarray = dataclasses.field(repr=False)
    networks: dict = dataclasses.field(repr=False)
    manifest: dict = dataclasses.field(repr=False)

    def summary(self) -> dict:
        tr = self.manifest.get("training", {})
        return {"name": self.name, "size": self.size, "beta": self.beta, "coarsest": self.coarsest, "scheme": self.scheme,
                "learned_levels": sorted(self.networks), "levels": len(self.couplings),
                "ess": tr.get("ess"), "training_seconds": tr.get("wall_seconds")}


def _metadata(data: bytes, where: str) -> dict:
    import onnx

    try:
        m = onnx.load_from_string(data)
    except Exception as exc:  # noqa: BLE001
        raise MultilevelModelError(f"{where}: not a readable ONNX model ({exc})") from exc
    names_in = [i.name for i in m.graph.input]
    names_out = [o.name for o in m.graph.output]
    if names_in != ["embedded"] or names_out != ["logit"]:
        raise MultilevelModelError(f"{where}: inputs {names_in} / outputs {names_out}, expected ['embedded'] / ['logit']")
    return {p.key: p.value for p in m.metadata_props}


def _check_odd(net: Network, n: int, where: str) -> None:
    """Z2: the network must satisfy logit(-x, m) = -logit(x, m) (checked on a random input)."""
    rng = np.random.default_rng(12345)
    m = (rng.random((1, 1, n, n)) < 0.5).astype(np.float32)
    x = np.where(rng.random((1, 1, n, n)) < 0.5, 1.0, -1.0).astype(np.float32) * m
    sess = net.session("numpy")
    import array_api_compat.numpy as xp

    a = net.run(sess, np.concatenate([x, m], axis=1), xp)
    b = net.run(sess, np.concatenate([-x, m], axis=1), xp)
    tol = 1e-4 * (1.0 + float(np.max(np.abs(a))))
    if not np.allclose(a, -b, atol=tol, rtol=0):
        raise MultilevelModelError(f"{where}: the network is not odd in the spins (Z2 symmetry broken by "
                                   f"{float(np.max(np.abs(a + b))):.3g})")


def load_model(name_or_path) -> MultilevelModel:
    """A validated :class:`MultilevelModel` from a model directory, its manifest path, or a shipped name."""
    if isinstance(name_or_path, MultilevelModel):
        return name_or_path
    p = os.fspath(name_or_path)
    if os.path.isfile(p):
        directory, manifest_path = os.path.dirname(os.path.abspath(p)), p
    elif os.path.isdir(p):
        directory, manifest_path = p, os.path.join(p, "manifest.json")
    else:
        directory = os.path.join(models_directory(), p)
        manifest_path = os.path.join(directory, "manifest.json")
        if not os.path.isfile(manifest_path):
            known = ", ".join(m["name"] for m in list_models()) or "none"
            raise MultilevelModelError(f"model={p!r}: no such multilevel model directory or shipped model (shipped: {known})")
    try:
        with open(manifest_path) as fh:
            man = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise MultilevelModelError(f"{manifest_path}: cannot read the manifest ({exc})") from exc
    where = manifest_path
    if man.get("format") != FORMAT:
        raise MultilevelModelError(f"{where}: format {man.get('format')!r}, expected {FORMAT!r}")
    try:
        size, beta, c = int(man["size"]), float(man["beta"]), int(man["coarsest"])
        cc = tuple(float(v) for v in man["coarsest_couplings"])
        levels = man["levels"]
        scheme = str(man.get("scheme", "seed001"))
    except (KeyError, TypeError, ValueError) as exc:
        raise MultilevelModelError(f"{where}: missing or malformed field ({exc})") from exc
    try:
        H = Hierarchy(size, c, scheme)
    except (TypeError, ValueError) as exc:
        raise MultilevelModelError(f"{where}: {exc}") from exc
    if len(cc) != 2:
        raise MultilevelModelError(f"{where}: coarsest_couplings must be [K_nn, K_nnn]")
    if [lv.get("index") for lv in levels] != list(range(1, H.n_levels)):
        raise MultilevelModelError(f"{where}: levels must list indices 1..{H.n_levels - 1} in order")
    couplings = np.empty(H.n_levels)
    couplings[0] = cc[0]
    networks = {}
    for entry, lv in zip(levels, H.levels[1:]):
        if entry.get("kind") != lv.kind or int(entry.get("grid", -1)) != lv.grid:
            raise MultilevelModelError(f"{where}: level {lv.index} is {entry.get('kind')}/grid {entry.get('grid')}, "
                                       f"the hierarchy says {lv.kind}/grid {lv.grid}")
        couplings[lv.index] = float(entry.get("coupling", math.nan))
        if lv.kind == "decimated" and (entry.get("network") or not math.isclose(couplings[lv.index], beta, rel_tol=1e-12)):
            raise MultilevelModelError(f"{where}: level {lv.index} is the exact decimated conditional: no network, "
                                       f"coupling beta={beta}")
        if entry.get("network"):
            f = os.path.join(directory, entry["network"])
            try:
                with open(f, "rb") as fh:
                    data = fh.read()
            except OSError as exc:
                raise MultilevelModelError(f"{where}: network file {f} cannot be read ({exc})") from exc
            md = _metadata(data, f)
            if md.get("isingcore.format") != NETWORK_FORMAT:
                raise MultilevelModelError(f"{f}: isingcore.format {md.get('isingcore.format')!r}, expected {NETWORK_FORMAT!r}")
            try:
                lev, grid, halo = int(md["isingcore.level"]), int(md["isingcore.grid"]), int(md["isingcore.halo"])
            except (KeyError, ValueError) as exc:
                raise MultilevelModelError(f"{f}: missing or malformed metadata ({exc})") from exc
            if (lev, grid, md.get("isingcore.kind")) != (lv.index, lv.grid, lv.kind):
                raise MultilevelModelError(f"{f}: metadata says level {lev} ({md.get('isingcore.kind')}, grid {grid}); "
                                           f"the manifest puts it at level {lv.index} ({lv.kind}, grid {lv.grid})")
            net = Network(lv.index, lv.grid, lv.kind, halo, md, data)
            _check_odd(net, lv.grid_size, f)
            networks[lv.index] = net
        elif not math.isfinite(couplings[lv.index]):
            raise MultilevelModelError(f"{where}: heat-bath level {lv.index} needs a finite coupling")
    last = H.levels[-1].index
    if H.n_levels > 1 and (last in networks or not math.isclose(couplings[last], beta, rel_tol=1e-12)):
        raise MultilevelModelError(f"{where}: the last level must be the exact heat bath with coupling beta={beta}")
    return MultilevelModel(str(man.get("name", os.path.basename(directory))), directory, size, beta, c, cc,
                           scheme, couplings, networks, man)


def list_models(directory: str | None = None) -> list[dict]:
    """Summaries of the multilevel models in ``directory`` (default: the shipped ones)."""
    directory = directory or models_directory()
    out = []
    if not os.path.isdir(directory):
        return out
    for name in sorted(os.listdir(directory)):
        d = os.path.join(directory, name)
        if os.path.isfile(os.path.join(d, "manifest.json")):
            try:
                out.append({**load_model(d).summary(), "path": d})
            except MultilevelModelError as exc:
                out.append({"name": name, "path": d, "error": str(exc)})
    return out


def write_manifest(directory: str, *, name: str, size: int, beta: float, coarsest: int, coarsest_couplings,
                   couplings, networks: dict | None = None, training: dict | None = None,
                   scheme: str = "seed001") -> str:
    """Write ``manifest.json`` for a model (``networks``: level index -> file name in ``directory``)."""
    H = Hierarchy(size, coarsest, scheme)
    networks = networks or {}
    couplings = [float(k) for k in couplings]
    if len(couplings) != H.n_levels:
        raise ValueError(f"couplings must have {H.n_levels} entries (one per level), got {len(couplings)}")
    man = {"format": FORMAT, "name": name, "size": int(size), "beta": float(beta), "coarsest": int(coarsest),
           "coarsest_couplings": [float(v) for v in coarsest_couplings], "scheme": scheme,
           "levels": [{"index": lv.index, "kind": lv.kind, "grid": lv.grid, "coupling": couplings[lv.index],
                       "network": networks.get(lv.index)} for lv in H.levels[1:]],
           "training": training or {}}
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "manifest.json")
    with open(path, "w") as fh:
        json.dump(man, fh, indent=1)
    return path
