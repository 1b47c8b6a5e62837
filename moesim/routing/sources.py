"""Router statistics from files: load histograms ``[steps, layers, experts]`` and token traces
``[layers, tokens, k]``. Formats: .npy, .npz, .csv (one row per layer), .json, and .pt (torch.load; only
when torch is installed) as dumped by SGLang's expert-distribution recorder (``logical_count``,
``[buffered_steps, layers, logical_experts]``), vLLM's EPLB state (``expert_load_window``
``[window, layers, physical]``, ``expert_load_pass`` ``[layers, physical]``) or the ``weight`` argument
of DeepSeek's EPLB (``[layers, logical_experts]``).
"""

from __future__ import annotations

import csv
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

HISTOGRAM_KEYS = ("logical_count", "expert_load_window", "expert_load_pass", "weight", "counts", "loads")
TRACE_KEYS = ("topk_ids", "ids")


class SourceError(ValueError):
    """A statistics file that cannot be used; the message says what to fix."""


def load_array(path: Path, key: str | None, keys: tuple[str, ...]) -> tuple[np.ndarray, dict[str, Any]]:
    """The array under ``key`` (or the first of ``keys`` present) and the other entries (cached per file
    version: the config check and the build read the same file)."""
    st = path.stat()
    arr, extra = _load_cached(str(path.resolve()), st.st_mtime_ns, st.st_size, key, keys)
    return arr.copy(), dict(extra)


@lru_cache(maxsize=8)
def _load_cached(p: str, _mtime: int, _size: int, key: str | None,
                 keys: tuple[str, ...]) -> tuple[np.ndarray, dict[str, Any]]:
    path = Path(p)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path), {}
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r]
        if rows and not _numeric(rows[0][0]):
            rows = rows[1:]  # a header
        return np.array([[float(x) for x in r] for r in rows]), {}
    if suffix == ".npz":
        data = dict(np.load(path))
    elif suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, list):
            return np.asarray(data), {}
    elif suffix in (".pt", ".pth"):
        data = _torch_load(path)
    else:
        raise SourceError(f"unknown format {suffix!r}: use .npy, .npz, .csv, .json or .pt")
    if not isinstance(data, dict):
        return np.asarray(_to_numpy(data)), {}
    name = key or next((k for k in keys if k in data), None)
    if name is None or name not in data:
        raise SourceError(f"no array {key or ' / '.join(keys)!r} in the file (it has {sorted(data)}): "
                          "set router.stats.key")
    return np.asarray(_to_numpy(data[name])), {k: _to_numpy(v) for k, v in data.items() if k != name}


def _numeric(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _torch_load(path: Path) -> Any:
    try:
        import torch  # noqa: PLC0415 (optional: only for .pt dumps)
    except ImportError:
        raise SourceError("reading .pt needs torch (pip install torch), or save the array as .npy") from None
    return torch.load(path, map_location="cpu", weights_only=False)


def _to_numpy(x: Any) -> Any:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else x


def load_histogram(path: str | Path, key: str | None, step: int | str, layers: int, experts: int) -> np.ndarray:
    """Per-layer expert load ``[layers, experts]`` (float, not normalised) from a histogram file.

    Physical counts (more columns than experts) are folded to logical experts with the file's
    ``physical_to_logical_map`` when present.
    """
    arr, extra = load_array(Path(path), key, HISTOGRAM_KEYS)
    arr = np.asarray(arr, dtype=float)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise SourceError(f"expected [layers, experts] or [steps, layers, experts], got shape {arr.shape}")
    series = arr.mean(axis=0) if step == "mean" else _pick(arr, int(step))
    if series.shape[1] != experts:
        p2l = extra.get("physical_to_logical_map")
        if p2l is None:
            raise SourceError(f"{series.shape[1]} experts per layer in the file, the model has {experts}: "
                              "give logical counts, or include physical_to_logical_map")
        p2l = np.asarray(p2l, dtype=int)
        series = np.stack([np.bincount(p2l[i % len(p2l)], weights=row, minlength=experts)
                           for i, row in enumerate(series)])
    if series.shape[0] != layers:
        raise SourceError(f"{series.shape[0]} layers in the file, the model has {layers} MoE layers: "
                          "use a matching model (e.g. --set model.num_hidden_layers=...) or file")
    if (series < 0).any() or not np.isfinite(series).all():
        raise SourceError("loads must be finite and non-negative")
    return series


def load_histogram_steps(path: str | Path, key: str | None, layers: int, experts: int) -> list[np.ndarray]:
    """Every step of a histogram time series, each normalised per layer [layers, experts]."""
    arr, _ = load_array(Path(path), key, HISTOGRAM_KEYS)
    arr = np.asarray(arr, dtype=float)
    steps = arr.shape[0] if arr.ndim == 3 else 1
    out = []
    for t in range(steps):
        h = load_histogram(path, key, t, layers, experts)
        out.append(np.maximum(h, 1e-12) / np.maximum(h, 1e-12).sum(axis=1, keepdims=True))
    return out


def _pick(arr: np.ndarray, step: int) -> np.ndarray:
    if not -arr.shape[0] <= step < arr.shape[0]:
        raise SourceError(f"step {step} out of range: the file has {arr.shape[0]} steps")
    return arr[step]


def load_trace(path: str | Path, layers: int, experts: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Token routing ``topk_ids [layers, tokens, k]`` int64 and optional ``topk_weights`` (same shape)."""
    ids, extra = load_array(Path(path), None, TRACE_KEYS)
    ids = np.asarray(ids)
    if ids.ndim == 2:
        ids = ids[None]
    if ids.ndim != 3 or not np.issubdtype(ids.dtype, np.integer):
        raise SourceError(f"topk_ids must be integers [layers, tokens, k], got {ids.dtype} {ids.shape}")
    if ids.shape[0] != layers:
        raise SourceError(f"the trace has {ids.shape[0]} layers, the model has {layers} MoE layers: "
                          "use a matching model (e.g. --set model.num_hidden_layers=...) or trace")
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
