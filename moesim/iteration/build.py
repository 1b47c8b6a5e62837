"""Scenario → engine inputs: model, routing, placement, traffic and compute times for every MoE layer.

Randomness: one seed per scenario, split by numpy's SeedSequence into independent streams (router
statistics; then one stream per layer for token routing), so a layer's draws do not depend on the others.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from moesim.comm.traffic import FlowSet, LayerTraffic, layer_traffic
from moesim.config.schema import Scenario, TraceStats
from moesim.hw.costs import roofline as costs
from moesim.hw.costs.base import CostModel
from moesim.hw.costs.loader import cost_model
from moesim.hw.topology import Topology, build_topology
from moesim.ir.blocks import mixed_non_moe_times, non_moe_times, tp_allreduce_flows
from moesim.ir.programs import LayerPieces
from moesim.ir.resolve import Resolved, resolve
from moesim.iteration.reuse import RouteReuse, moe_key, routing_key, shared_key
from moesim.iteration.tensor_parallel import group_traffic, moe_allreduce, shard
from moesim.model.moe import MoEModel
from moesim.placement import PLACEMENTS, Placement
from moesim.placement.window import planning_inputs, planning_load
from moesim.routing import Routed, RoutingParams, expert_popularity, route
from moesim.routing.router import capacity_keep, route_clusters
from moesim.routing.rules import RULES
from moesim.routing.sources import load_trace, tokens_for
from moesim.routing.stats import coactivation_mixture


@dataclass(frozen=True)
class LayerStats:
    """Per-layer facts the summary needs. Arrays over GPUs [G] or experts [E]; bytes; seconds."""

    gpu_tokens: np.ndarray
    expert_tokens: np.ndarray
    copies: float
    dropped: float
    intra_node_bytes: float
    inter_node_bytes: float
    distinct_nodes_mean: float
    sent_bytes: np.ndarray  # per GPU, dispatch + combine
    received_bytes: np.ndarray
    devices_hist: np.ndarray  # [k+1] tokens by distinct destination GPUs
    nodes_hist: np.ndarray  # [k+1] tokens by distinct destination nodes


@dataclass(frozen=True)
class Built:
    """Everything the engine and the summary need."""

    scenario: Scenario
    resolved: Resolved
    topology: Topology
    placement: Placement
    fluid_network: bool
    sampled_tokens_per_gpu: int
    pieces: list[LayerPieces]
    stats: list[LayerStats]
    costs_source: str = ""
    trace_exact: bool | None = None  # None: no trace replayed

    @property
    def model(self) -> MoEModel:
        return self.resolved.model

    @property
    def routing(self) -> RoutingParams:
        return self.resolved.routing


def _rng(seq: np.random.SeedSequence) -> np.random.Generator:
    """SFC64: ~15% faster than the default PCG64 for the bulk score draws, same statistical quality class."""
    return np.random.Generator(np.random.SFC64(seq))


def fidelity(s: Scenario) -> tuple[bool, bool]:
    """(fluid network?, exact routing?) after resolving ``auto`` by the scenario's size."""
    g, tokens = s.cluster.num_gpus, s.workload.tokens_per_gpu
    fluid = s.sim.network == "fluid" or (s.sim.network == "auto" and g <= s.sim.auto_fluid_max_gpus)
    exact = s.sim.routing == "exact" or (s.sim.routing == "auto" and g * tokens <= s.sim.auto_exact_max_tokens)
    return fluid, exact


def routed_tokens_per_gpu(s: Scenario) -> int:
    """Tokens routed per GPU per layer: all of them in exact mode, else the per-layer sample spread."""
    if fidelity(s)[1]:
        return s.workload.tokens_per_gpu
    per_gpu = max(s.sim.min_sampled_per_gpu, s.sim.sampled_tokens // s.cluster.num_gpus)
    return min(s.workload.tokens_per_gpu, per_gpu)


def popularity_of(s: Scenario) -> np.ndarray:
    """The scenario's per-layer expert popularity [layers, E], exactly as ``build`` draws it."""
    r = resolve(s)
    model, params = r.model, r.routing
    stats_ss = np.random.SeedSequence(s.seed).spawn(3)[0]
    return expert_popularity(s.router.stats, model.num_moe_layers, model.experts, _rng(stats_ss),
                             s.cluster.num_gpus * s.workload.tokens_per_gpu, params.top_k)


def build(s: Scenario, trace: list[np.ndarray] | None = None, placement: Placement | None = None,
          micro_batch: int = 0, reuse: RouteReuse | None = None) -> Built:
    """Route every MoE layer and turn it into engine work. Layers are independent (own random streams),
    so they are built in parallel threads (numpy releases the GIL in its bulk loops); the result does not
    depend on the thread count.

    trace: optional per-MoE-layer top-k ids [G·T, k] (tokens GPU-major: GPU 0's T tokens first) replayed
    instead of synthetic routing. placement: use this plan instead of planning one (rebalancing studies).
    micro_batch: a later micro-batch draws its own tokens (its own routing streams) from the same statistics.
    reuse: routings already made by a run that differed only in placement (``RouteReuse``).
    """
    res = resolve(s)
    model, params = res.model, res.routing
    topo = build_topology(s.cluster)
    g, layers = topo.num_gpus, model.num_moe_layers
    stats_ss, route_ss, place_ss = np.random.SeedSequence(s.seed).spawn(3)
    popularity = expert_popularity(s.router.stats, layers, model.experts, _rng(stats_ss),
                                   g * s.workload.tokens_per_gpu, params.top_k)
    co = getattr(s.router.stats, "coactivation", None)
    # the clusters' favoured experts belong to the statistics: drawn once, shared by planning and routing
    co_rng = _rng(stats_ss.spawn(1)[0])
    mixtures = [coactivation_mixture(popularity[layer], co, co_rng)[0] for layer in range(layers)] if co else None
    threads = s.sim.threads or min(4, os.cpu_count() or 1)
    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    try:
        if s.moe_in_tp_group:  # the group's EP ranks hold contiguous experts: nothing to plan
            placement = Placement(np.tile(np.arange(model.experts), (layers, g)), g)
        if placement is None:
            plan = lambda: _plan(s, params, popularity, stats_ss, place_ss, mixtures, pool, reuse)  # noqa: E731
            shared = reuse is not None and reuse.layers  # the plan never reads the context: shared across it
            placement = reuse.get(("placement", moe_key(s)), plan) if shared else plan()
        built = _build_layers(s, res, topo, placement, popularity, trace, mixtures, micro_batch, route_ss, pool,
                              reuse)
    finally:
        if pool is not None:
            pool.shutdown()
    return built


def _plan(s: Scenario, params: RoutingParams, popularity: np.ndarray, stats_ss, place_ss, mixtures,
          pool, reuse: RouteReuse | None = None) -> Placement:
    """The scenario's placement, planned on the load the planner sees (``placement.window.planning_load``)."""
    strategy = PLACEMENTS.get(s.placement.kind)
    if strategy.load_blind and s.placement.redundant_experts == 0:
        load = popularity  # the layout ignores the load: the window is not routed (its counts go unused)
    elif reuse is None:
        load = planning_load(s, params, popularity, mixtures, _rng, pool)
    else:
        key = ("window", routing_key(s), s.placement.window_tokens, s.placement.plan_on)
        load = reuse.get(key, lambda: planning_load(s, params, popularity, mixtures, _rng, pool))
    if reuse is not None and strategy.inputs == "pairs":  # co-selection counts: no placement in them
        key = ("pairs", routing_key(s), s.placement.plan_tokens)
        extra = {**reuse.get(key, lambda: planning_inputs(s, params, popularity, stats_ss, place_ss, mixtures, _rng))}
        if strategy.prepare is not None:  # depends on the routing only: variants differing in redundancy share it
            key = ("prepared", s.placement.kind, routing_key(s), s.placement.window_tokens, s.placement.plan_on,
                   s.placement.plan_tokens, s.cluster.num_gpus, s.cluster.gpus_per_node)
            extra.update(reuse.get(key, lambda: strategy.prepare(load, s.cluster.num_gpus, s.cluster.gpus_per_node,
                                                                 extra["pairs"])))
    else:
        extra = planning_inputs(s, params, popularity, stats_ss, place_ss, mixtures, _rng)
    return strategy.plan(load, s.cluster.num_gpus, s.placement.redundant_experts,
                         gpus_per_node=s.cluster.gpus_per_node, n_group=params.n_group, rng=_rng(place_ss), **extra)


def _build_layers(s, res, topo, placement, popularity, trace, mixtures, micro_batch, route_ss, pool,
                  reuse: RouteReuse | None = None) -> Built:
    """Route and cost every MoE layer (in ``pool``'s threads when given)."""
    model, params = res.model, res.routing
    g, layers = topo.num_gpus, model.num_moe_layers
    trace_exact = None
    if trace is None and isinstance(s.router.stats, TraceStats):
        trace, trace_exact = _trace_tokens(s, layers, model.experts, g * s.workload.tokens_per_gpu)
    if trace is not None and len(trace) != layers:
        raise ValueError(f"trace has {len(trace)} layers, the model has {layers} MoE layers")
    t = s.workload.moe_tp
    a = s.workload.attention_tp
    cm = cost_model(s.cluster, shard(model, t, a) if s.moe_in_tp_group else model, params.top_k)
    non_moe = non_moe_pieces(res, g, cm) if res.whole_model else None
    ctx = _Context(s, res, topo, placement, popularity,
                   routed_tokens_per_gpu(s) if trace is None else s.workload.tokens_per_gpu,
                   cm, trace, mixtures, non_moe, reuse,
                   (routing_key(s), micro_batch) if reuse and not reuse.layers else None,
                   shared_key(s, placement, micro_batch) if reuse and reuse.layers else None)
    seeds = route_ss.spawn(layers) if not micro_batch else \
        np.random.SeedSequence(s.seed, spawn_key=(1, 1_000_000 + micro_batch)).spawn(layers)
    built = list(pool.map(ctx.layer, range(layers), seeds)) if pool is not None else \
        [ctx.layer(i, ss) for i, ss in enumerate(seeds)]
    return Built(s, res, topo, placement, fidelity(s)[0], ctx.sampled,
                 [b[0] for b in built], [b[1] for b in built], ctx.costs.source, trace_exact)


def non_moe_pieces(r: Resolved, g: int, cm: CostModel) -> tuple[list[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Whole-model scope: the named non-MoE compute before each MoE layer and after the last one. On a
    measured or silicon profile the attention core, dense FFNs and GEMMs come from its tables."""
    s = r.scenario
    rc = costs.ComputeCosts.from_gpu(s.cluster.gpu, r.model.weight_dtype)
    core_fn = lambda kind: cm.attention_core_fn(s.model, kind)  # noqa: E731 (per attention kind; None: roofline)
    ffn_fn = cm.dense_ffn_fn(s.model)
    w = s.workload
    tp, lk, gpn = w.attention_tp, r.links, s.cluster.gpus_per_node
    # the analytic ring's slowest hop: NVLink inside a node; a TP group of whole nodes crosses the NICs
    link = lk.nvlink_Bps if tp <= gpn else min(lk.nvlink_Bps, lk.nic_Bps * lk.nics_per_node / gpn)
    fns = (cm.gemm_fn(), cm.gemm_fn(bf16=True))  # a silicon profile's measured GEMMs (None: the roofline's)

    def times(link_Bps: float) -> tuple[list[dict[str, np.ndarray]], dict[str, np.ndarray]]:
        kw = {"tp": tp, "link_Bps": link_Bps, "latency_s": lk.collective_latency_s, "core_fn": core_fn,
              "ffn_fn": ffn_fn, "gemm_fns": fns}
        if w.mode == "mixed":
            d, dctx = w.decode_share
            p = np.full(g, float(w.prefill_tokens_per_gpu))
            return mixed_non_moe_times(s.model, r.model.moe_layer_ids, p, np.full(g, float(d)), rc,
                                       w.context_tokens, dctx, **kw)
        return non_moe_times(s.model, r.model.moe_layer_ids, np.full(g, w.tokens_per_gpu_f), rc,
                             w.mode == "decode", w.context_tokens, queries=w.decode_queries, **kw)

    # before each MoE layer the engine moves TP all-reduces as flows (link 0: none folded in here); after
    # the last one (trailing blocks, head) the analytic ring stands in
    before, _ = times(0.0 if tp > 1 else link)
    _, after = times(link)
    return before, after


def _trace_tokens(s: Scenario, layers: int, experts: int, n: int) -> tuple[list[np.ndarray], bool]:
    """The trace's first ``n`` tokens per layer (reused cyclically when it is shorter: then not exact)."""
    ids, _ = load_trace(s.router.stats.path, layers, experts)
    picked = [tokens_for(layer, n) for layer in ids]
    return [p[0] for p in picked], all(p[1] for p in picked)


@dataclass(frozen=True)
class _Context:
    """What every layer's build shares; ``layer`` builds one."""

    s: Scenario
    r: Resolved
    topo: Topology
    placement: Placement
    popularity: np.ndarray
    sampled: int
    costs: CostModel
    trace: list[np.ndarray] | None
    mixtures: list[np.ndarray] | None = None  # per layer [clusters, E] popularity, with co-activation
    non_moe: tuple[list[dict], dict] | None = None  # whole-model scope: named pieces before each layer, after
    reuse: RouteReuse | None = None
    reuse_key: tuple | None = None  # routings shared under it (runs differing in placement)
    shared_key: tuple | None = None  # whole MoE layers shared under it (runs differing in context)

    @property
    def model(self) -> MoEModel:
        return self.r.model

    @property
    def params(self) -> RoutingParams:
        return self.r.routing

    def layer(self, layer: int, seed: np.random.SeedSequence) -> tuple[LayerPieces, LayerStats]:
        """The layer's named pieces and stats. Its MoE part (routing, replicas, drops, traffic) does not
        depend on the context: with ``reuse`` it is made once per ``shared_key``, and only the pieces
        (attention over this run's context) are made for each run."""
        if self.shared_key is None:
            tr, flows, stats = self._moe(layer, seed)
        else:
            tr, flows, stats = self.reuse.get((*self.shared_key, layer), lambda: self._moe(layer, seed))
        return self._pieces(layer, tr, flows), stats

    def _moe(self, layer: int, seed: np.random.SeedSequence) -> tuple[LayerTraffic, FlowSet | None, LayerStats]:
        """(traffic, a TP layer's output all-reduce or None, stats) of one MoE layer."""
        s, topo, placement, r = self.s, self.topo, self.placement, self.r
        g, tokens, sampled = topo.num_gpus, s.workload.tokens_per_gpu, self.sampled
        if self.trace is not None:
            rt = Routed(np.asarray(self.trace[layer], dtype=np.int64), np.ones(self.trace[layer].shape, bool))
        else:
            rt = self._routed(layer, len(self._owners()), seed)
        ids, live = rt.ids, rt.keep
        if s.moe_in_tp_group:  # tokens replicated over the attention TP group: no dispatch
            return self._tp_layer(layer, ids, live, rt.score)
        slot = placement.choose_slots(layer, ids, s.placement.replica_policy, np.repeat(np.arange(g), sampled),
                                      topo.gpus_per_node, _rng(seed.spawn(1)[0]))
        dst = placement.slot_gpu()[slot]
        keep = self._capacity(ids, dst, live, rt.score, g * sampled)
        tr = layer_traffic(np.repeat(np.arange(g), sampled), dst, keep, slot, placement.phy2log.shape[1], topo,
                           r.algorithm, r.dispatch_copy_bytes, r.combine_copy_bytes, scale=tokens / sampled,
                           live=live, chunks=s.comm.chunks)
        expert_tokens = np.bincount(ids[keep], minlength=self.model.experts) * (tokens / sampled)
        return tr, None, _layer_stats(tr, expert_tokens, topo)

    def _tp_layer(self, layer: int, ids, live, score) -> tuple[LayerTraffic, FlowSet, LayerStats]:
        """A MoE layer inside an attention TP group (``iteration.tensor_parallel``): every GPU runs its EP
        rank's experts (1/moe_tp of each) on the group's tokens; an all-reduce sums the outputs."""
        s, topo, t, a = self.s, self.topo, self.s.workload.moe_tp, self.s.workload.attention_tp
        g, w = topo.num_gpus, s.workload
        own = self._owners()
        scale = 1.0 if w.group_tokens else w.tokens_per_gpu / self.sampled  # group_tokens are drawn exactly
        keep = self._capacity(ids, np.broadcast_to(own[:, None], ids.shape), live, score, len(own))
        tr = group_traffic(ids, keep, live, own, g, a, t, self.model.experts, scale)
        flows = moe_allreduce(g, topo.gpus_per_node, a, w.tokens_per_gpu_f, self.model.hidden)
        expert_tokens = np.bincount(ids[keep], minlength=self.model.experts) * scale
        stats = _layer_stats(replace(tr, dispatch=flows), expert_tokens, topo)
        return tr, flows, replace(stats, gpu_tokens=stats.gpu_tokens / t)

    def _owners(self) -> np.ndarray:
        """[N] the GPU each drawn token belongs to: ``sampled`` per GPU, or with ``group_tokens`` exactly
        that many per attention TP group (on the group's first GPU)."""
        w, g = self.s.workload, self.topo.num_gpus
        if w.group_tokens:
            return np.repeat(np.arange(0, g, w.attention_tp), w.group_tokens)
        return np.repeat(np.arange(g), self.sampled)

    def _pieces(self, layer: int, tr: LayerTraffic, moe_allreduce: FlowSet | None = None) -> LayerPieces:
        """The layer's named compute (reserved-SM slowdown applied) and flows. ``moe_allreduce``: a
        tensor-parallel layer's output all-reduce; its GPUs run the group's tokens and no dispatch."""
        s, cm, slow, g = self.s, self.costs, self.r.compute_slowdown, self.topo.num_gpus
        grouped = s.moe_in_tp_group  # a TP group's GPUs hold its a x T tokens
        local = np.full(g, s.workload.tokens_per_gpu_f * (s.workload.attention_tp if grouped else 1))
        regroup = cm.regroup(tr.slot_tokens) if g > 1 and not grouped else np.zeros(g)  # copies sorted by expert
        moe = {"router": cm.router(local), "permute": cm.permute(local), "regroup": regroup,
               "routed_experts": cm.expert(tr.slot_tokens), "shared_experts": cm.shared(local),
               "unpermute": cm.unpermute(local)}
        before, after, tp_flows = {}, {}, None
        ids = self.model.moe_layer_ids
        if self.non_moe is not None:
            before = self.non_moe[0][layer]
            after = self.non_moe[1] if layer == len(ids) - 1 else {}
            tp = s.workload.attention_tp
            if tp > 1:  # attention (and the dense FFNs, tensor parallel too), their all-reduces as flows
                blocks = ids[layer] - (ids[layer - 1] if layer else -1)
                dense = blocks - 1 if s.model.intermediate_size else 0  # dense blocks folded into this layer
                tp_flows = tp_allreduce_flows(g, self.topo.gpus_per_node, tp, s.workload.tokens_per_gpu_f,
                                              self.model.hidden, blocks + dense)
        scaled = [{k: v * slow for k, v in d.items()} for d in (before, moe, after)]
        if moe_allreduce is not None:
            return LayerPieces(layer, ids[layer], *scaled, None, None, tp_flows, moe_allreduce)
        return LayerPieces(layer, ids[layer], *scaled, tr.dispatch, tr.combine, tp_flows)

    def _routed(self, layer: int, n: int, seed: np.random.SeedSequence) -> Routed:
        """The layer's routing, from ``reuse`` when a run with another placement made it already (not kept
        where whole layers are shared: the layer holds what its routing made)."""
        if self.reuse_key is None:
            return self._route(layer, n, _rng(seed))
        home = self._home(layer)
        key = ("layer", *self.reuse_key, layer, n, None if home is None else home.tobytes())
        return self.reuse.get(key, lambda: self._route(layer, n, _rng(seed)))

    def _route(self, layer: int, n: int, rng: np.random.Generator) -> Routed:
        """Synthetic routing; with co-activation, each token's cluster picks its own popularity."""
        home = self._home(layer)
        if self.mixtures is None:
            return route(self.popularity[layer], n, self.params, rng, home=home)
        return route_clusters(self.mixtures[layer], n, self.params, rng, home)

    def _home(self, layer: int) -> np.ndarray | None:
        """[E] the device (or node) of each expert's first replica, for placement-limited routing."""
        if self.params.limit_scope is None:
            return None
        row = self.placement.phy2log[layer]
        first = np.array([np.flatnonzero(row == e)[0] for e in range(self.model.experts)])
        gpu = self.placement.slot_gpu()[first]
        return gpu // self.topo.gpus_per_node if self.params.limit_scope == "nodes" else gpu

    def _capacity(self, ids, dst, live, score, n_tokens: int) -> np.ndarray:
        """Capacity drops (none for expert choice, whose capacity is its selection)."""
        p = self.params
        if p.capacity_factor is None or RULES.get(p.rule).own_capacity:
            return live
        if p.capacity_scope == "device":
            g = self.topo.num_gpus
            return capacity_keep(dst, live, g, n_tokens * p.top_k * p.capacity_factor / g, p.drop_policy, score)
        e = self.model.experts
        return capacity_keep(ids, live, e, n_tokens * p.top_k * p.capacity_factor / e, p.drop_policy, score)


def _layer_stats(tr: LayerTraffic, expert_tokens: np.ndarray, topo: Topology) -> LayerStats:
    both = FlowSet.concat([tr.dispatch, tr.combine])
    inter = topo.node_of(both.src) != topo.node_of(both.dst)
    g = topo.num_gpus
    return LayerStats(
        gpu_tokens=tr.slot_tokens.sum(axis=1), expert_tokens=expert_tokens, copies=tr.copies,
        dropped=tr.dropped, intra_node_bytes=float(both.nbytes[~inter].sum()),
        inter_node_bytes=float(both.nbytes[inter].sum()), distinct_nodes_mean=tr.distinct_nodes_mean,
        sent_bytes=np.bincount(both.src, weights=both.nbytes, minlength=g),
        received_bytes=np.bincount(both.dst, weights=both.nbytes, minlength=g),
        devices_hist=tr.devices_hist, nodes_hist=tr.nodes_hist)
