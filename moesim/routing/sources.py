"""Router statistics from files: load histograms ``[steps, layers, experts]`` and token traces
``[layers, tokens, k]``. Formats: .npy, .npz, .csv (one row per layer), .json, and .pt (``torch.load`` with
``weights_only=True``; only when torch is installed) as the engines dump them (``dumps``): SGLang's
expert-distribution recorder in all three modes, vLLM's EPLB state, or the ``weight`` argument of DeepSeek's
EPLB (``[layers, logical_experts]``). Steps that counted nothing (unwritten ring-buffer slots) are dropped;
rows of dense layers (a file with one row per model layer) are dropped.
"""

from __future__ import annotations

import csv
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from moesim.routing import dumps

HISTOGRAM_KEYS = ("logical_count", "expert_load_window", "global_physical_count", "expert_load_pass", "weight",
                  "counts", "loads")
TRACE_KEYS = ("topk_ids", "ids")


class SourceError(ValueError):
    """A statistics file that cannot be used; the message says what to fix."""


MAX_STATS_BYTES = 8 * 2**30  # a statistics file past this is not one moesim can hold in memory anyway


def load_array(path: str | Path | list, key: str | None, keys: tuple[str, ...]) -> tuple[np.ndarray, dict[str, Any]]:
    """The array under ``key`` (or the first of ``keys`` present) and the other entries, with the name of
    the chosen entry under ``source_key`` (cached per file version: the config check and the build read the
    same file). Not a regular file, too large, corrupt or truncated: one SourceError saying which. Several
    paths (an engine's per-rank dump files) are merged as the engine's ranks split them (``dumps.merge``);
    one rank's file alone is refused (it counts only that rank's experts)."""
    paths = [Path(p) for p in path] if isinstance(path, list | tuple) else [Path(path)]
    parts = [_load_one(p, key, keys) for p in paths]
    if len(parts) == 1:
        arr, extra = parts[0]
        cols = dumps.lone_slice(arr, extra)
        if cols is not None and extra.get("source_key") != "topk_ids":
            raise SourceError(f"rank {extra['ranks'][0]}'s file of a per-rank dump counts only its own experts "
                              f"(physical {cols[0]}..{cols[1]} of {arr.shape[-1]}; zeros elsewhere): give every "
                              "rank's file, path: [..._0.pt, ..._1.pt, ...] or a glob such as "
                              "'expert_distribution_recorder_*.pt'")
        return arr, extra
    try:
        return dumps.merge(parts, parts[0][1].get("source_key", key or ""))
    except ValueError as exc:
        raise SourceError(str(exc)) from None


def _load_one(path: Path, key: str | None, keys: tuple[str, ...]) -> tuple[np.ndarray, dict[str, Any]]:
    from moesim.util import safeio
    from moesim.util.errors import ScenarioError
    try:
        safeio.read_bytes(path, limit=MAX_STATS_BYTES, what="statistics file", probe=True)
    except ScenarioError as err:
        raise SourceError(err.problem + (f" (fix: {err.fix})" if err.fix else "")) from None
    st = path.stat()
    try:
        arr, extra = _load_cached(str(path.resolve()), st.st_mtime_ns, st.st_size, key, keys)
    except SourceError:
        raise
    except (OSError, EOFError, ValueError, KeyError, IndexError, TypeError, RecursionError,
            zipfile.BadZipFile) as exc:
        raise SourceError(f"cannot read it as {path.suffix or 'a'} data ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:120] if str(exc) else 'truncated or corrupt'})") from None
    return arr.copy(), dict(extra)


@lru_cache(maxsize=8)
def _load_cached(p: str, _mtime: int, _size: int, key: str | None,
                 keys: tuple[str, ...]) -> tuple[np.ndarray, dict[str, Any]]:
    path = Path(p)
    suffix = path.suffix.lower()
    _check_magic(path, suffix)
    if suffix == ".npy":
        return np.load(path), {}
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8", errors="strict") as fh:
            rows = [r for r in csv.reader(fh) if r]
        if rows and not _numeric(rows[0][0]):
            rows = rows[1:]  # a header
        return np.array([[float(x) for x in r] for r in rows]), {}
    if suffix == ".npz":
        data = dict(np.load(path))
    elif suffix == ".json":
        from moesim.util import safeio
        data = safeio.load_json(path, what="statistics file", limit=MAX_STATS_BYTES)
        if isinstance(data, list):
            return np.asarray(data), {}
    elif suffix in (".pt", ".pth"):
        data = _torch_load(path)
    else:
        raise SourceError(f"unknown format {suffix!r}: use .npy, .npz, .csv, .json or .pt")
    if not isinstance(data, dict):
        return np.asarray(_to_numpy(data)), {}
    data = dumps.unpack(data)
    name = key or next((k for k in keys if k in data), None)
    if name is None or name not in data:
        raise SourceError(f"no array {key or ' / '.join(keys)!r} in the file (it has {sorted(data)}): "
                          "set router.stats.key")
    extra = {k: _to_numpy(v) for k, v in data.items() if k != name}
    return np.asarray(_to_numpy(data[name])), {**extra, "source_key": name}


MAGIC = {".npy": (b"\x93NUMPY", "a NumPy .npy file (numpy.save writes one)"),
         ".npz": (b"PK", "a NumPy .npz archive (a zip file: numpy.savez writes one)")}


def _check_magic(path: Path, suffix: str) -> None:
    """A file named .npy / .npz must start as one: a text file under that name was reported as "pickled
    (object) data" in a message cut mid-word."""
    if suffix not in MAGIC:
        return
    magic, what = MAGIC[suffix]
    with path.open("rb") as fh:
        head = fh.read(len(magic))
    if head != magic:
        raise SourceError(f"not {what}: it does not start with its signature; save it with numpy or rename it "
                          "to its real format (.csv, .json)")


def _numeric(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _torch_load(path: Path) -> Any:
    try:
        import torch  # optional: only for .pt dumps
    except ImportError:
        raise SourceError("reading .pt needs torch (pip install torch), or save the array as .npy") from None
    # weights_only: tensors, dicts, lists and numbers only; a pickle that runs code is refused
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise SourceError(f"not a readable torch file of tensors ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:160] if str(exc) else 'no detail'})") from None


def _to_numpy(x: Any) -> Any:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else x


def load_histogram(path: str | Path | list, key: str | None, step: int | str, layers: int, experts: int) -> np.ndarray:
    """Per-layer expert load ``[layers, experts]`` (float, not normalised) from a histogram file.

    Physical counts (more columns than experts) are folded to logical experts with the file's
    ``physical_to_logical_map`` when present.
    """
    arr, extra = series(path, key)
    return _step(arr, extra, step, layers, experts)


def _step(arr: np.ndarray, extra: dict[str, Any], step: int | str, layers: int, experts: int) -> np.ndarray:
    """One step (or the mean) of a loaded series [steps, layers, E] (``series``), folded and cut to MoE
    layers."""
    try:
        arr = dumps.drop_empty_steps(arr)
        empty = arr.sum(axis=(0, 2)) == 0
        one = arr.mean(axis=0) if step == "mean" else _pick(arr, int(step))
        return dumps.moe_rows(fold_physical(one, extra, experts), layers, empty)
    except ValueError as exc:
        raise SourceError(str(exc)) from None


HUGE_COUNT = 1e100  # counts above this are scaled to shares before any sum


def series(path: str | Path | list, key: str | None) -> tuple[np.ndarray, dict[str, Any]]:
    """A histogram file's loads as [steps, layers, E] floats (checked finite and non-negative: every reader of
    histograms, ``run`` and ``stats`` alike, gets them through here), and the file's other entries."""
    arr, extra = load_array(path, key, HISTOGRAM_KEYS)
    arr = np.asarray(arr, dtype=float)
    if arr.ndim == 2:
        arr = arr[None]
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise SourceError("loads must be finite and non-negative")
    top = float(arr.max()) if arr.size else 0.0
    if top > HUGE_COUNT:  # shares are what routing reads: scaled down, sums and means cannot overflow
        arr = arr / top  # (a uniform histogram of 1e308 counts summed to inf: NaN shares, a segfault)
    if arr.ndim != 3:
        raise SourceError(f"expected [layers, experts] or [steps, layers, experts], got shape {arr.shape}")
    return arr, extra


def fold_physical(counts: np.ndarray, extra: dict[str, Any], experts: int) -> np.ndarray:
    """Physical counts [layers, physical] folded onto logical experts with the file's map (whenever the file
    has one: after a rebalance physical slot i need not hold logical expert i). A ``-1`` in the map is a slot
    that holds no expert, as vLLM's elastic EP writes them on a scale up or down (``eplb_state.py`` fills the
    new slots with -1 and zeroes their loads): it is left out; a load on such a slot is refused."""
    p2l = extra.get("physical_to_logical_map")
    if p2l is None:
        if counts.shape[1] == experts:
            return counts
        raise SourceError(f"{counts.shape[1]} experts per layer in the file, the model has {experts}: "
                          "give logical counts, or include physical_to_logical_map")
    p2l = np.asarray(p2l, dtype=np.int64)
    if p2l.ndim == 1:
        p2l = p2l[None]
    if p2l.shape[-1] != counts.shape[1] or p2l.min() < -1 or p2l.max() >= experts:
        raise SourceError(f"physical_to_logical_map {p2l.shape} does not match {counts.shape[1]} physical "
                          f"experts of a {experts}-expert model")
    out = []
    for i, row in enumerate(counts):
        m = p2l[i % len(p2l)]
        if (row[m < 0] != 0).any():
            raise SourceError(f"layer row {i}: {int((row[m < 0] != 0).sum())} physical slot(s) marked -1 (no expert) "
                              "in physical_to_logical_map carry loads; give the map and the loads of the same step")
        out.append(np.bincount(m[m >= 0], weights=row[m >= 0], minlength=experts))
    return np.stack(out)


def load_histogram_steps(path: str | Path | list, key: str | None, layers: int, experts: int) -> list[np.ndarray]:
    """Every step of a histogram time series, each normalised per layer [layers, experts]."""
    arr, extra = series(path, key)
    try:
        steps = dumps.drop_empty_steps(arr).shape[0]
    except ValueError as exc:
        raise SourceError(str(exc)) from None
    out = []
    for t in range(steps):
        h = _step(arr, extra, t, layers, experts)
        out.append(np.maximum(h, 1e-12) / np.maximum(h, 1e-12).sum(axis=1, keepdims=True))
    return out


def _pick(arr: np.ndarray, step: int) -> np.ndarray:
    if not -arr.shape[0] <= step < arr.shape[0]:
        raise SourceError(f"step {step} out of range: the file has {arr.shape[0]} steps")
    return arr[step]


def load_trace(path: str | Path | list, layers: int, experts: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Token routing ``topk_ids [layers, tokens, k]`` int64 and optional ``topk_weights`` (same shape)."""
    ids, extra = load_array(path, None, TRACE_KEYS)
    ids = np.asarray(ids)
    if ids.ndim == 2:
        ids = ids[None]
    if ids.ndim != 3 or not np.issubdtype(ids.dtype, np.integer):
        raise SourceError(f"topk_ids must be integers [layers, tokens, k], got {ids.dtype} {ids.shape}")
    try:
        ids = dumps.moe_rows(ids, layers, (ids < 0).all(axis=(1, 2)))
    except ValueError as exc:
        raise SourceError(str(exc).replace("in the file", "in the trace")) from None
    if ids.min() < 0 or ids.max() >= experts:
        raise SourceError(f"expert ids must lie in [0, {experts}), found {ids.min()}..{ids.max()}")
    if any(len(set(row)) != len(row) for row in ids.reshape(-1, ids.shape[2])[:1000].tolist()):
        raise SourceError("a token lists the same expert twice in topk_ids")
    w = extra.get("topk_weights")
    return ids.astype(np.int64), (np.asarray(w, dtype=float) if w is not None else None)


def tokens_for(ids: np.ndarray, n: int) -> tuple[np.ndarray, bool]:
    """The first ``n`` tokens of one layer's ``[tokens, k]`` trace, reused cyclically if it is shorter.
    Returns (ids [n, k], exact?)."""
    if ids.shape[0] >= n:
        return ids[:n], True
    return ids[np.arange(n) % ids.shape[0]], False
