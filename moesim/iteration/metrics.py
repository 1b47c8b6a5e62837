"""Records → summary: a pure function from engine timestamps and layer statistics to typed records.

Exposed time (see ``moesim.iteration.summary``): inside a window [a, b] of one GPU's timeline each instant goes to
the first compute stage active then (program order), else to the first communication stage moving data
(from when its partners were ready to when the GPU left it), else to waiting. Windows tile the timeline,
so stage times plus waiting add up to it exactly:
- a layer row: program p of micro-batch m on its critical GPU (the last to finish it), from the end of
  program p−1 (its last GPU) to that GPU's end of p;
- the totals: the same with every micro-batch's stages together (programs p..p+2, which can overlap p's
  window under two-batch overlap), so they sum to the iteration time;
- a GPU row: that GPU's own windows, so they sum to its finish time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from moesim.engine.records import END, START, SimRecords
from moesim.ir.program import Program
from moesim.iteration.build import LayerStats
from moesim.iteration.summary import GpuRow, LayerRow, Summary, Timeline, Totals
from moesim.routing.analysis import gini, max_vio

LOOKAHEAD = 3  # programs p..p+2 may overlap program p's window (two-batch overlap)


def _ratio(x: np.ndarray) -> float:
    mean = float(np.mean(x))
    return float(np.max(x) / mean) if mean > 0 else 1.0


def exposure(start: np.ndarray, end: np.ndarray, a: np.ndarray, b: np.ndarray, ids: np.ndarray,
             n_ids: int) -> tuple[np.ndarray, np.ndarray]:
    """Exposed seconds per id [G, n_ids] and waiting [G] inside windows [a, b] [G].

    start, end [G, N]: active intervals in priority order (NaN: absent); ids [N]: the id each counts for."""
    lo, hi = a[:, None], b[:, None]
    s = np.where(np.isnan(start), lo, np.clip(start, lo, hi))
    e = np.where(np.isnan(end), lo, np.clip(end, lo, hi))
    bp = np.sort(np.concatenate([s, e, lo, hi], axis=1), axis=1)
    length, mid = bp[:, 1:] - bp[:, :-1], (bp[:, 1:] + bp[:, :-1]) / 2
    cover = (s[:, :, None] <= mid[:, None, :]) & (mid[:, None, :] < e[:, :, None])  # [G, N, K]
    hit, first = cover.any(axis=1), cover.argmax(axis=1)
    out = np.zeros((start.shape[0], n_ids))
    rows = np.broadcast_to(np.arange(start.shape[0])[:, None], first.shape)
    np.add.at(out, (rows[hit], ids[first[hit]]), length[hit])
    return out, np.where(hit, 0.0, length).sum(axis=1)


class _Timelines:
    """Active intervals of the records, compute before communication, with their stage-name ids."""

    def __init__(self, records: SimRecords) -> None:
        self.r, self.names = records, _vocabulary(records.names)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.ends = records.program_end()  # [M, P, G]
        self.by_kind = []  # per program: (compute stage indexes, their name ids), same for comm
        for names, kinds in zip(records.names, records.kinds):
            per = []
            for kind in ("compute", "comm"):
                idx = [i for i, k in enumerate(kinds) if k == kind]
                ids = np.array([self.index[names[i]] for i in idx], dtype=np.int64)
                per.append((np.array(idx, dtype=np.int64), ids))
            self.by_kind.append(per)

    def intervals(self, ms: list[int], ps: list[int], gpus: slice = slice(None)
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """start, end [G, N] and ids [N] of micro-batches ``ms``' programs ``ps`` on ``gpus``: every compute
        stage first (so compute overlapping communication counts as compute), then every communication one."""
        starts, ends, ids = [], [], []
        for kind in (0, 1):
            for p in ps:
                order, pid = self.by_kind[p][kind]
                for m in ms:
                    t = self.r.times[m, p, gpus][:, order]
                    starts.append(t[..., START]), ends.append(t[..., END]), ids.append(pid)
        return np.concatenate(starts, axis=1), np.concatenate(ends, axis=1), np.concatenate(ids)

    def window(self, ms: list[int], p: int, ahead: int = 1) -> tuple[np.ndarray, np.ndarray, int]:
        """Exposure of program p's window on its critical GPU over micro-batches ``ms``: per stage [n],
        waiting, the GPU."""
        end = self.ends[ms, p].max(axis=0)  # [G]
        c = int(np.argmax(end))
        a = float(self.ends[ms, p - 1].max()) if p else 0.0
        ps = list(range(p, min(p + ahead, self.ends.shape[1])))
        s, e, ids = self.intervals(ms, ps, slice(c, c + 1))
        exp, wait = exposure(s, e, np.array([a]), end[c:c + 1], ids, len(self.names))
        return exp[0], float(wait[0]), c

    def per_gpu(self) -> tuple[np.ndarray, np.ndarray]:
        """Every GPU's own windows, all micro-batches: exposed [G, n] and waiting [G]."""
        m_all = list(range(self.ends.shape[0]))
        g = self.ends.shape[2]
        if len(m_all) == 1 and self._sequential():
            return self._durations()
        total, wait = np.zeros((g, len(self.names))), np.zeros(g)
        for p in range(self.ends.shape[1]):
            a = self.ends[:, p - 1].max(axis=0) if p else np.zeros(g)
            ps = list(range(p, min(p + LOOKAHEAD, self.ends.shape[1]))) if len(m_all) > 1 else [p]
            s, e, ids = self.intervals(m_all, ps)
            exp, w = exposure(s, e, a, self.ends[:, p].max(axis=0), ids, len(self.names))
            total += exp
            wait += w
        return total, wait


    def _sequential(self) -> bool:
        """One micro-batch whose stages never overlap (no parallel branches): exposure is plain duration."""
        t = self.r.times[0]
        gap = t[:, :, 1:, START] - t[:, :, :-1, END]
        return not (gap < -1e-12 * max(self.r.iteration_time_s, 1e-30)).any()

    def _durations(self) -> tuple[np.ndarray, np.ndarray]:
        t = self.r.times[0]
        dur = np.nan_to_num(t[..., END] - t[..., START])  # [P, G, S]
        total = np.zeros((t.shape[1], len(self.names)))
        for p, names in enumerate(self.r.names):
            total[:, [self.index[n] for n in names]] += dur[p, :, :len(names)]
        finish = self.ends.max(axis=(0, 1))
        return total, finish - total.sum(axis=1)


def _vocabulary(names: tuple[tuple[str, ...], ...]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for per in names:
        seen.update(dict.fromkeys(per))
    return tuple(seen)


def _named(vec: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
    return {n: float(v) for n, v in zip(names, vec) if v != 0.0}


def _row(tl: _Timelines, prog: Program, m: int, p: int, st: LayerStats, prev_end: float) -> LayerRow:
    exp, wait, c = tl.window([m], p)
    end = float(tl.ends[m, p, c])
    return LayerRow(
        layer=prog.layer, block=prog.block, pass_=prog.pass_, step=prog.step, micro_batch=m,
        time_s=end - prev_end, stages=_named(exp, tl.names), waiting_s=wait, critical_gpu=c,
        gpu_load_max_over_mean=_ratio(st.gpu_tokens), expert_load_max_over_mean=_ratio(st.expert_tokens),
        intra_node_bytes=st.intra_node_bytes, inter_node_bytes=st.inter_node_bytes, dropped_tokens=st.dropped,
        distinct_nodes_per_token=st.distinct_nodes_mean, expert_gini=gini(st.expert_tokens),
        expert_max_vio=max_vio(st.expert_tokens), gpu_max_vio=max_vio(st.gpu_tokens),
        tokens_by_distinct_devices=tuple(st.devices_hist.tolist()),
        tokens_by_distinct_nodes=tuple(st.nodes_hist.tolist()),
        inter_node_bytes_per_token=st.inter_node_bytes / max(float(st.nodes_hist.sum()), 1.0))


def layer_rows(tl: _Timelines, programs: list[list[Program]], stats: list[list[LayerStats]]) -> list[LayerRow]:
    """One row per (micro-batch, program), each micro-batch's rows tiling its own timeline."""
    rows = []
    for m, progs in enumerate(programs):
        prev = 0.0
        for p, prog in enumerate(progs):
            rows.append(_row(tl, prog, m, p, stats[m][prog.layer], prev))
            prev = float(tl.ends[m, p].max())
    return rows


def _totals(tl: _Timelines, rows: list[LayerRow], stats: list[list[LayerStats]], programs) -> Totals:
    m_all = list(range(tl.ends.shape[0]))
    ahead = LOOKAHEAD if len(m_all) > 1 else 1
    exp, wait = np.zeros(len(tl.names)), 0.0
    for p in range(tl.ends.shape[1]):
        e, w, _ = tl.window(m_all, p, ahead)
        exp, wait = exp + e, wait + w
    loads = np.array([sum(stats[m][prog.layer].gpu_tokens for m in m_all) for prog in programs[0]])
    return Totals(
        intra_node_bytes=float(sum(r.intra_node_bytes for r in rows)),
        inter_node_bytes=float(sum(r.inter_node_bytes for r in rows)),
        dropped_tokens=float(sum(r.dropped_tokens for r in rows)),
        computed_copies=float(sum(stats[m][prog.layer].copies for m in m_all for prog in programs[m])),
        gpu_load_max_over_mean=_ratio(loads.sum(axis=0)) if loads.size else 1.0,
        mean_layer_gpu_load_max_over_mean=float(np.mean([_ratio(x) for x in loads])) if loads.size else 1.0,
        stages=_named(exp, tl.names), waiting_s=wait)


def gpu_rows(tl: _Timelines, stats: list[list[LayerStats]], programs: list[list[Program]],
             gpus_per_node: int) -> list[GpuRow]:
    """One row per GPU over the iteration."""
    exp, wait = tl.per_gpu()
    finish = tl.ends.max(axis=(0, 1))
    compute = np.unique(np.concatenate([per[0][1] for per in tl.by_kind]))  # name ids of compute stages
    per = [stats[m][prog.layer] for m, progs in enumerate(programs) for prog in progs]
    tokens = np.sum([s.gpu_tokens for s in per], axis=0)
    sent, recv = np.sum([s.sent_bytes for s in per], axis=0), np.sum([s.received_bytes for s in per], axis=0)
    busy = exp[:, compute].sum(axis=1)
    return [GpuRow(gpu=g, node=g // gpus_per_node, expert_tokens=float(tokens[g]), stages=_named(exp[g], tl.names),
                   waiting_s=float(wait[g]), finish_s=float(finish[g]),
                   busy_fraction=float(busy[g] / finish[g]) if finish[g] > 0 else 0.0,
                   sent_bytes=float(sent[g]), received_bytes=float(recv[g])) for g in range(finish.size)]


def _timelines(rows: list[LayerRow], m_count: int) -> tuple[Timeline, ...]:
    out = []
    for m in range(m_count):
        mine = [r for r in rows if r.micro_batch == m]
        stages: dict[str, float] = {}
        for r in mine:
            for k, v in r.stages.items():
                stages[k] = stages.get(k, 0.0) + v
        out.append(Timeline(m, float(sum(r.time_s for r in mine)), stages, float(sum(r.waiting_s for r in mine))))
    return tuple(out)


def summarize(records: SimRecords, programs: list[list[Program]], stats: list[list[LayerStats]], tokens: int,
              gpus_per_node: int, meta: dict[str, Any], scope: str, context: int) -> Summary:
    """The typed summary of one simulated iteration. stats[m][layer]: micro-batch m's MoE layer stats."""
    tl = _Timelines(records)
    rows = layer_rows(tl, programs, stats)
    totals = _totals(tl, rows, stats, programs)
    g = records.times.shape[2]
    sync = sum(totals.stages.get(n, 0.0) for n in ("gradient_sync", "expert_gradient_sync", "data_parallel_sync"))
    return Summary(meta=meta, scope=scope, context_tokens=context, gpus=g, nodes=g // gpus_per_node,
                   iteration_time_s=records.iteration_time_s, tokens_per_iteration=tokens,
                   stage_names=tl.names, layers=tuple(rows),
                   gpu_rows=tuple(gpu_rows(tl, stats, programs, gpus_per_node)), totals=totals,
                   micro_batches=_timelines(rows, len(programs)), gradient_sync_s=sync)
