"""Engines' own dump files, turned into moesim's arrays. Shapes as the engines write them (read from their
code; docs/sources.md):

- SGLang expert-distribution recorder, ``stat`` mode (``expert_distribution_recorder_{time}.pt``): a dict
  with ``logical_count`` [buffer, num_hidden_layers, logical experts] int32 (rows of dense layers are zero;
  buffer slots not yet written are zero), ``rank`` and ``average_utilization_rate_over_window``.
- SGLang ``per_pass`` / ``per_token`` modes (``expert_distribution_recorder_{time}_{rank}.pt``): a dict with
  ``records`` (one per forward pass: ``forward_pass_id``, ``rank``, ``gatherer_key``,
  ``global_physical_count`` [num_hidden_layers, physical]; ``per_token`` adds ``topk_ids_of_layer``
  [num_hidden_layers, tokens, 8] of physical ids, -1 where unused, and ``input_ids``, ``positions``, ...)
  and ``last_physical_to_logical_map`` [num_hidden_layers, physical].
- vLLM EPLB state (the tensors of ``EplbModelState``, saved with ``torch.save``): ``expert_load_window``
  [window, MoE layers, physical] int32 (a ring buffer: unwritten slots are zero), ``expert_load_pass``
  [MoE layers, physical], ``physical_to_logical_map`` [MoE layers, physical], ``logical_to_physical_map``,
  ``logical_replica_count``.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def unpack(data: dict[str, Any]) -> dict[str, Any]:
    """A dump's entries as plain arrays. SGLang's per-pass records become ``global_physical_count``
    [passes, layers, physical] and (per-token mode) ``topk_ids`` [layers, tokens, k] of logical ids, with
    ``physical_to_logical_map`` from the dump's last map. Other dicts come back unchanged."""
    records = data.get("records")
    if not isinstance(records, list) or "last_physical_to_logical_map" not in data:
        return data
    if not records:
        raise ValueError("the SGLang dump has no records: record some forward passes before dumping")
    p2l = np.asarray(data["last_physical_to_logical_map"], dtype=np.int64)
    out: dict[str, Any] = {"physical_to_logical_map": p2l,
                           "forward_pass_id": np.array([int(r.get("forward_pass_id", i)) for i, r in
                                                        enumerate(records)]),
                           "ranks": sorted({int(r["rank"]) for r in records if "rank" in r}),
                           "global_physical_count": np.stack([np.asarray(r["global_physical_count"])
                                                              for r in records])}
    if all("topk_ids_of_layer" in r for r in records):
        out["topk_ids"] = _logical_ids(np.concatenate([np.asarray(r["topk_ids_of_layer"]) for r in records],
                                                      axis=1), p2l)
    return out


def _logical_ids(phys: np.ndarray, p2l: np.ndarray) -> np.ndarray:
    """Physical top-k ids [layers, tokens, 8] (-1 unused) mapped to logical ids; the columns no token
    uses (top-k below SGLang's 8 slots) dropped; layers never written (dense) stay all -1."""
    logical = np.where(phys >= 0, np.take_along_axis(p2l[:, None, :].repeat(phys.shape[1], 1),
                                                     np.maximum(phys, 0), axis=2), -1)
    used = (logical >= 0).any(axis=(0, 1))
    return logical[:, :, used]


def drop_empty_steps(series: np.ndarray) -> np.ndarray:
    """[steps, layers, E] without the steps that counted nothing (ring-buffer slots never written)."""
    keep = series.reshape(series.shape[0], -1).sum(axis=1) > 0
    if not keep.any():
        raise ValueError("every step of the file counts zero tokens: record some traffic first")
    return series[keep]


def moe_rows(rows: np.ndarray, layers: int, empty: np.ndarray) -> np.ndarray:
    """``rows`` [file layers, ...] cut to the model's ``layers`` MoE layers when the file has one row per
    model layer: the rows marked ``empty`` [file layers] (dense layers, never counted) are dropped."""
    if rows.shape[0] == layers:
        return rows
    if rows.shape[0] > layers and int((~empty).sum()) == layers:
        return rows[~empty]
    raise ValueError(f"{rows.shape[0]} layers in the file ({int((~empty).sum())} with counts), the model has "
                     f"{layers} MoE layers: use a matching model (e.g. --set model.num_hidden_layers=...) or file")


def merge(parts: list[tuple[np.ndarray, dict[str, Any]]], key: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Several files of one dump (SGLang writes one per rank in per_pass and per_token modes, each rank
    counting only its own physical experts: ``_convert_local_to_global_physical_count``) as one: counts add,
    pass by pass (aligned on ``forward_pass_id`` where the files have it); token traces (``topk_ids``) are
    concatenated, each rank's tokens after the previous rank's. ValueError where the files disagree."""
    arrays = [np.asarray(a) for a, _ in parts]
    extras = [e for _, e in parts]
    maps = [e.get("physical_to_logical_map") for e in extras]
    if any(m is not None for m in maps) and not all(m is not None and np.array_equal(m, maps[0]) for m in maps):
        raise ValueError("the files have different physical_to_logical_map: give the files of one dump")
    out = dict(extras[0])
    if key in ("topk_ids", "ids"):
        if len({a.shape[0] for a in arrays}) != 1 or len({a.shape[2:] for a in arrays}) != 1:
            raise ValueError(f"the traces' shapes differ ({[a.shape for a in arrays]}): give the files of one dump")
        return np.concatenate(arrays, axis=1), out
    if len({a.shape[1:] for a in arrays}) != 1:
        raise ValueError(f"the files' count shapes differ ({[a.shape for a in arrays]}): give the files of one dump")
    ids = [e.get("forward_pass_id") for e in extras]
    if arrays[0].ndim == 3 and all(i is not None for i in ids):  # per pass: align the ranks' passes
        union = np.unique(np.concatenate(ids))
        total = np.zeros((union.size, *arrays[0].shape[1:]), dtype=float)
        for a, i in zip(arrays, ids):
            np.add.at(total, np.searchsorted(union, i), a)
        out["forward_pass_id"] = union
    else:
        if len({a.shape for a in arrays}) != 1:
            raise ValueError(f"the files' shapes differ ({[a.shape for a in arrays]}): give the files of one dump")
        total = np.sum([a.astype(float) for a in arrays], axis=0)
    out["ranks"] = sorted({r for e in extras for r in e.get("ranks", [])})
    if "topk_ids" in out:
        out["topk_ids"] = np.concatenate([e["topk_ids"] for e in extras], axis=1)
    return total, out


def lone_slice(counts: np.ndarray, extra: dict[str, Any]) -> tuple[int, int] | None:
    """[first, last] physical expert columns where ``counts`` (one SGLang per-rank file: [..., physical])
    is zero everywhere else and covers at most half of the columns: one rank's slice of a dump whose other
    ranks' files are missing. None for a file that is not a per-rank dump or counts more than a slice."""
    if not extra.get("ranks") or counts.ndim < 2:
        return None
    used = np.flatnonzero(np.abs(counts).reshape(-1, counts.shape[-1]).sum(axis=0) > 0)
    if used.size == 0 or used[-1] - used[0] + 1 > counts.shape[-1] // 2:
        return None
    return int(used[0]), int(used[-1])
