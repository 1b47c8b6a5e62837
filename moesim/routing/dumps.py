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
