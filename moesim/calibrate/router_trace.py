"""``python -m moesim.calibrate.router_trace``: apply a real gate to hidden states and write a token trace.

Inputs: gate weights ``[E, H]`` or ``[layers, E, H]`` and hidden states ``[tokens, H]`` or
``[layers, tokens, H]`` (.npy, .npz with one array, or .pt), optionally a selection bias ``[E]`` or
``[layers, E]`` (DeepSeek-V3's ``e_score_correction_bias``). The gate is linear + softmax/sigmoid + the
group limit + top-k + renormalisation (moesim/calibrate/pieces.py ``router``). Output: ``topk_ids`` and
``topk_weights`` [layers, tokens, k] for ``router.stats: {kind: trace, path: ...}``.
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import numpy as np
import torch

from moesim.calibrate import pieces as P


class InputError(ValueError):
    """An input file that is not tensors (one line naming the file and the fix)."""


def _load(path: Path) -> np.ndarray:
    """A tensor file's array. ``.pt`` loads with ``weights_only=True`` (tensors, no code: a pickle that would
    run code is refused); ``.npy`` / ``.npz`` with ``allow_pickle=False``."""
    try:
        if path.suffix in (".pt", ".pth"):
            obj = torch.load(path, map_location="cpu", weights_only=True)
            obj = next(iter(obj.values())) if isinstance(obj, dict) else obj
            return obj.float().numpy() if hasattr(obj, "numpy") else np.asarray(obj)
        data = np.load(path, allow_pickle=False)
        return data[data.files[0]] if hasattr(data, "files") else data
    except pickle.UnpicklingError:  # weights_only refused an object that is not a tensor (it might run code)
        raise InputError(f"{path}: not a tensor file moesim reads safely (it holds Python objects other than "
                         "tensors, which loading could run as code); save plain tensors (torch.save of a tensor "
                         "or a dict of tensors, or numpy.save)") from None
    except (OSError, ValueError, RuntimeError, EOFError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: not a tensor file moesim reads safely ({first[:200]}); save plain tensors "
                         "(torch.save of a tensor or a dict of tensors, or numpy.save)") from None


def gate_trace(gate: np.ndarray, hidden: np.ndarray, k: int, scoring: str, n_group: int, topk_group: int,
               bias: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """ids, weights [layers, tokens, k]; a 2-D gate or hidden state is shared by every layer."""
    layers = max(gate.shape[0] if gate.ndim == 3 else 1, hidden.shape[0] if hidden.ndim == 3 else 1)
    ids, weights = [], []
    for layer in range(layers):
        w = torch.from_numpy(np.asarray(gate[layer] if gate.ndim == 3 else gate, dtype=np.float32))
        x = torch.from_numpy(np.asarray(hidden[layer] if hidden.ndim == 3 else hidden, dtype=np.float32))
        b = None
        if bias is not None:
            b = torch.from_numpy(np.asarray(bias[layer] if bias.ndim == 2 else bias, dtype=np.float32))
        wt, idx = P.router(x, w, k, scoring, b, n_group, topk_group)
        ids.append(idx.numpy())
        weights.append(wt.numpy())
    return np.stack(ids), np.stack(weights)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="python -m moesim.calibrate.router_trace", description=__doc__)
    ap.add_argument("--gate", type=Path, required=True)
    ap.add_argument("--hidden", type=Path, required=True)
    ap.add_argument("--bias", type=Path, default=None)
    ap.add_argument("--top-k", type=int, required=True)
    ap.add_argument("--scoring", choices=["softmax", "sigmoid"], default="softmax")
    ap.add_argument("--n-group", type=int, default=1)
    ap.add_argument("--topk-group", type=int, default=1)
    ap.add_argument("-o", "--out", type=Path, required=True)
    a = ap.parse_args(argv)
    try:
        gate, hidden, bias = _load(a.gate), _load(a.hidden), _load(a.bias) if a.bias else None
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ids, w = gate_trace(gate, hidden, a.top_k, a.scoring, a.n_group, max(a.topk_group, 1) if a.n_group > 1 else 1,
                        bias)
    np.savez_compressed(a.out, topk_ids=ids.astype(np.int32), topk_weights=w.astype(np.float32))
    print(f"wrote {a.out}: {ids.shape[0]} layers x {ids.shape[1]} tokens x top-{ids.shape[2]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
