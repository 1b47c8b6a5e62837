"""Cross-field checks that a single field's validator cannot see (routing vs model, experts vs GPUs)."""

from __future__ import annotations

from moesim.comm import ALGORITHMS
from moesim.config.schema import Scenario
from moesim.iteration.fit import check_context
from moesim.iteration.stages import stage_scenario
from moesim.model.layers import FULL, LAYER_KINDS
from moesim.model.moe import MoEModel
from moesim.placement import PLACEMENTS
from moesim.routing.rules import RULES
from moesim.util.errors import ScenarioError


def check_scenario(s: Scenario) -> None:
    """Raise ScenarioError for impossible combinations; each message names the field and the fix."""
    _check_registries(s)
    m, r = s.model, s.router
    experts = m.n_routed_experts
    top_k, n_group = s.top_k, s.n_group
    topk_group = r.topk_group or m.topk_group or n_group
    where = "router" if r.top_k else "model"
    if top_k > experts:
        raise ScenarioError(f"top_k {top_k} exceeds the {experts} routed experts", path=f"{where}.top_k"
                            if r.top_k else "model.num_experts_per_tok", fix=f"use top_k <= {experts}")
    gpath = "router.n_group" if r.n_group else "model.n_group"
    if experts % n_group:
        raise ScenarioError(f"{experts} experts do not split into {n_group} equal groups", path=gpath,
                            fix="use an n_group that divides n_routed_experts")
    tpath = "router.topk_group" if r.topk_group else "model.topk_group"
    if topk_group > n_group:
        raise ScenarioError(f"topk_group {topk_group} exceeds n_group {n_group}", path=tpath,
                            fix=f"use topk_group <= {n_group}")
    if r.limit is not None:
        g = s.cluster.num_gpus
        per_device = (experts + s.placement.redundant_experts) // g
        per_scope = per_device * (s.cluster.gpus_per_node if r.limit.scope == "nodes" else 1)
        if r.limit.max * per_scope < top_k:
            raise ScenarioError(f"{r.limit.max} {r.limit.scope} hold at most {r.limit.max * per_scope} experts, "
                                f"fewer than top_k {top_k}", path="router.limit.max",
                                fix=f"use max >= {-(-top_k // per_scope)}")
    _check_workload(s)
    check_context(s)
    if r.bias is not None and len(r.bias) != experts:
        raise ScenarioError(f"{len(r.bias)} bias values for {experts} experts", path="router.bias",
                            fix=f"give one value per routed expert ({experts})")
    if not RULES.get(r.rule).group_limits and (r.limit is not None or r.topk_group):
        raise ScenarioError(f"group and node limits apply to token-choice routing, not {r.rule}",
                            path="router.rule", fix="remove router.limit / router.topk_group, or use token_choice")
    if top_k > topk_group * (experts // n_group):
        raise ScenarioError(f"top_k {top_k} cannot be met from {topk_group} groups of "
                            f"{experts // n_group} experts", path=tpath, fix="raise topk_group or lower top_k")
    if s.workload.pipeline_stages > 1:
        return _check_pipeline(s)
    _check_cluster(s)
    _check_engine(s)
    _check_offload(s)
    _check_layers(m)


def _check_pipeline(s: Scenario) -> None:
    """pipeline_stages: stages of whole nodes or an even part of one, at least one MoE block each, one
    micro-batch per GPU, no offload or serving; then every check on one stage's scenario."""
    w, c = s.workload, s.cluster
    p, g, gpn = w.pipeline_stages, c.num_gpus, c.gpus_per_node
    moe_layers = MoEModel.from_spec(s.model).num_moe_layers
    per = g // p if g % p == 0 else 0
    refusals = [
        (p > moe_layers, f"{p} pipeline stages exceed the model's {moe_layers} MoE blocks (a stage needs one)",
         "workload.pipeline_stages", f"use at most {moe_layers} stages"),
        (g % p or (per >= gpn and per % gpn) or (per < gpn and gpn % per),
         f"{g} GPUs do not split into {p} stages of whole nodes or an even part of one", "workload.pipeline_stages",
         f"use a number of stages that divides {g} into multiples or divisors of {gpn} GPUs"),
        (w.micro_batches != 1, "two-batch overlap inside pipeline stages is not modelled", "workload.micro_batches",
         "use micro_batches: 1 with pipeline_stages"),
        (w.mode == "training" and w.pipeline_micro_batches is not None,
         "training pipelines run accumulation_steps micro-batches (1F1B)", "workload.pipeline_micro_batches",
         "set accumulation_steps instead"),
        (w.pipeline_virtual_stages > 1 and (w.mode != "training" or w.accumulation_steps % p
                                            or w.pipeline_virtual_stages * p > moe_layers),
         f"{w.pipeline_virtual_stages} virtual stages need training, accumulation_steps a multiple of the {p} "
         f"stages and a MoE block per chunk ({moe_layers} blocks)", "workload.pipeline_virtual_stages",
         "use pipeline_virtual_stages: 1, or a training run with accumulation_steps a multiple of the stages"),
        (s.offload is not None, "experts in host memory are modelled without a pipeline", "workload.pipeline_stages",
         "use pipeline_stages: 1 with an offload section"),
        (s.serving is not None, "serving deployments are modelled without a pipeline", "workload.pipeline_stages",
         "use pipeline_stages: 1 with a serving section (moesim run simulates pipelined iterations)"),
    ]
    for bad, problem, path, fix in refusals:
        if bad:
            raise ScenarioError(problem, path=path, fix=fix)
    try:
        check_scenario(stage_scenario(s))
    except ScenarioError as err:
        raise ScenarioError(f"one pipeline stage of {per} GPUs: {err.problem}", path=err.path, fix=err.fix) from None


def _check_workload(s: Scenario) -> None:
    """Scope, attention TP, accumulation and micro-batches against the model and the cluster."""
    if s.workload.scope == "whole_model" and not s.model.has_attention_shape:
        raise ScenarioError(f"model {s.model.name!r} gives no attention shape", path="workload.scope",
                            fix="add num_attention_heads, num_key_value_heads/head_dim or the MLA ranks, and "
                                "vocab_size to the model, or use scope: moe_layers")
    heads = s.model.num_attention_heads
    if heads and heads % s.workload.attention_tp:
        raise ScenarioError(f"attention_tp {s.workload.attention_tp} does not split the {heads} attention heads",
                            path="workload.attention_tp", fix="use a divisor of num_attention_heads")
    tp, gpn, g = s.workload.attention_tp, s.cluster.gpus_per_node, s.cluster.num_gpus
    if (gpn % tp if tp <= gpn else tp % gpn or g % tp):  # inside a node, or whole nodes (TP16 on 2 x 8)
        raise ScenarioError(f"attention_tp {tp} does not divide {gpn} GPUs per node, nor is it whole nodes "
                            f"dividing the {g} GPUs", path="workload.attention_tp",
                            fix=f"use a divisor of {gpn}, or a multiple of {gpn} that divides {g}")
    if s.workload.accumulation_steps > 1 and s.workload.mode != "training":
        raise ScenarioError("gradient accumulation applies to training", path="workload.accumulation_steps",
                            fix="use mode: training, or accumulation_steps: 1")
    if s.workload.mode == "training" and s.workload.micro_batches == 2:
        raise ScenarioError("two-batch overlap is modelled for inference", path="workload.micro_batches",
                            fix="use micro_batches: 1 with mode: training")
    _check_mixed(s)
    w = s.workload
    if w.mtp is not None and (w.mode != "decode" or w.micro_batches != 1 or w.pipeline_stages != 1):
        raise ScenarioError("multi-token prediction is modelled for decode iterations of one micro-batch without a "
                            "pipeline", path="workload.mtp", fix="use mode: decode, micro_batches: 1 and "
                            "pipeline_stages: 1, or leave mtp out")
    share = -(-w.group_tokens // w.attention_tp) if w.group_tokens is not None else 0
    if w.group_tokens is not None and (not s.moe_in_tp_group or w.mode != "decode" or w.micro_batches > 1
                                       or w.mtp is not None or s.router.stats.kind == "trace"
                                       or w.tokens_per_gpu != share):
        raise ScenarioError(f"group_tokens {w.group_tokens} needs a decode batch inside an attention TP group "
                            "(attention_tp above 1, one micro-batch, no workload.mtp, no trace) with tokens_per_gpu "
                            f"{share} (their ceiling share per GPU)",
                            path="workload.group_tokens", fix="leave group_tokens out, or set attention_tp and "
                            "tokens_per_gpu to match")
    if w.group_tokens is not None and w.group_tokens % w.decode_queries:
        raise ScenarioError(f"decode_queries {w.decode_queries} must divide group_tokens {w.group_tokens}",
                            path="workload.decode_queries", fix="use a multiple of decode_queries")
    if w.decode_queries > 1 and w.group_tokens is None and (w.mode != "decode" or w.tokens_per_gpu % w.decode_queries):
        raise ScenarioError(f"decode_queries {w.decode_queries} must divide a decode batch's tokens_per_gpu",
                            path="workload.decode_queries", fix="use mode: decode with tokens_per_gpu a multiple of "
                            "it, or decode_queries: 1")
    if s.workload.pipeline_stages == 1 and s.workload.pipeline_micro_batches is not None:
        raise ScenarioError("pipeline_micro_batches applies to a pipeline", path="workload.pipeline_micro_batches",
                            fix="set pipeline_stages > 1, or leave it out")
    if s.workload.micro_batches == 2 and (s.workload.tokens_per_gpu % 2 or s.router.stats.kind == "trace"):
        raise ScenarioError("two micro-batches need an even tokens_per_gpu and synthetic or histogram statistics",
                            path="workload.micro_batches", fix="use an even tokens_per_gpu, or micro_batches: 1")


def _check_mixed(s: Scenario) -> None:
    """mode: mixed needs its decode share inside the batch; the decode fields belong to mode: mixed."""
    w = s.workload
    if w.mode != "mixed":
        if w.decode_tokens_per_gpu or w.decode_context_tokens is not None:
            raise ScenarioError("decode_tokens_per_gpu and decode_context_tokens describe a mixed batch",
                                path="workload.decode_tokens_per_gpu", fix="use mode: mixed, or leave them out")
        return
    if w.decode_tokens_per_gpu > w.tokens_per_gpu:
        raise ScenarioError(f"decode_tokens_per_gpu {w.decode_tokens_per_gpu} exceeds the batch's tokens_per_gpu "
                            f"{w.tokens_per_gpu}", path="workload.decode_tokens_per_gpu",
                            fix="tokens_per_gpu counts prefill and decode tokens together: raise it")
    if w.micro_batches == 2 and w.decode_tokens_per_gpu % 2:
        raise ScenarioError("two micro-batches split the decode tokens in halves: they must be even",
                            path="workload.decode_tokens_per_gpu", fix="use an even count, or micro_batches: 1")


def _check_engine(s: Scenario) -> None:
    """sim.engine: lockstep runs the drain network, bound no network; both one micro-batch, no parallel
    branches."""
    e = s.sim.engine
    if e not in ("lockstep", "bound"):
        return
    why = ("the fluid network runs event by event" if s.sim.network == "fluid" and e == "lockstep" else
           "two micro-batches share each GPU" if s.workload.micro_batches > 1 else
           "shared experts overlapping dispatch run in parallel" if s.comm.overlap_shared_experts else None)
    if why:
        raise ScenarioError(f"{e} cannot run this scenario: {why}", path="sim.engine",
                            fix="use sim.engine: auto (lockstep where it applies) or des")


def _check_registries(s: Scenario) -> None:
    """Names the schema can only check the form of, against their registries."""
    if s.comm.algorithm != "auto" and s.comm.algorithm not in ALGORITHMS:
        raise ScenarioError(ALGORITHMS.unknown(s.comm.algorithm), path="comm.algorithm",
                            fix="use auto (low_latency for decode, hierarchical otherwise) or one of the names")
    if s.placement.kind not in PLACEMENTS:
        raise ScenarioError(PLACEMENTS.unknown(s.placement.kind), path="placement.kind",
                            fix="`moesim list placements` describes each")
    if s.router.rule not in RULES:
        raise ScenarioError(RULES.unknown(s.router.rule), path="router.rule", fix="token_choice is the common rule")


def _check_moe_tp(s: Scenario) -> None:
    """Inside an attention TP group the MoE runs on the group's replicated tokens: every expert sharded
    moe_tp ways over the group, ep = attention_tp / moe_tp ranks of whole experts (``iteration.tensor_parallel``)."""
    t, w, m = s.workload.moe_tp, s.workload, s.model
    a, where = w.attention_tp, "workload.moe_tp"
    if a % t:
        raise ScenarioError(f"moe_tp {t} does not divide attention_tp {a}: the experts are sharded inside the "
                            "attention TP group (moe_tp x ep = attention_tp)", path=where,
                            fix=f"use a divisor of {a} (moe_tp {a}: every expert on every GPU of the group)")
    if m.n_routed_experts % (a // t):
        raise ScenarioError(f"{m.n_routed_experts} experts do not split over {a // t} EP ranks (attention_tp {a} / "
                            f"moe_tp {t})", path=where, fix="use a moe_tp that leaves a divisor of the experts")
    shared = m.shared_expert_intermediate_size or m.n_shared_experts * m.moe_intermediate_size
    if m.moe_intermediate_size % t or (m.n_shared_experts and shared % a):
        raise ScenarioError(f"the experts' intermediate size ({m.moe_intermediate_size}, shared {shared}) does not "
                            f"split into {t} shards ({a} for the shared)", path=where,
                            fix="use a moe_tp that divides them")
    why = ("redundant experts are placed by EPLB over expert-parallel GPUs" if s.placement.redundant_experts else
           "the backward pass of experts inside an attention TP group is not modelled" if w.mode == "training" else
           "two micro-batches overlap an all-to-all that an attention TP group does not have"
           if w.micro_batches > 1 else
           "device and node limits pick experts by where they live; a TP group's tokens do not move"
           if s.router.limit is not None else "offload places experts over expert-parallel GPUs"
           if s.offload is not None else None)
    if why:
        who = f"moe_tp {t}" if t > 1 else f"attention_tp {a}"
        raise ScenarioError(f"{who}: {why}", path=where if t > 1 else "workload.attention_tp",
                            fix="use attention_tp: 1 (data-parallel attention, experts dispatched all-to-all) "
                                "for this")


def serving_instances_split(s: Scenario) -> bool:
    """Whether the serving deployment runs instances smaller than the cluster (each checked on its own by
    ``moesim.serve.deploy``, so the whole cluster's expert slots need not divide)."""
    d = s.serving.deployment if s.serving is not None else None
    return d is not None and (d.kind == "disaggregated" or (d.ep_gpus or s.cluster.num_gpus) < s.cluster.num_gpus)


def _check_cluster(s: Scenario) -> None:
    if s.moe_in_tp_group:
        return _check_moe_tp(s)
    if serving_instances_split(s):
        return None
    check_slots(s)


def check_slots(s: Scenario) -> None:
    """The whole cluster as one expert-parallel group: its placement's slots, replicas and limits."""
    c = s.cluster
    experts, gpus = s.model.n_routed_experts, c.num_gpus
    redundant = s.placement.redundant_experts
    strategy = PLACEMENTS.get(s.placement.kind)
    if not strategy.replicas and redundant:
        raise ScenarioError(f"{s.placement.kind} places each expert once", path="placement.redundant_experts",
                            fix="use redundant_experts: 0, or placement.kind: eplb for replicas")
    if strategy.check is not None:
        strategy.check(s, s.n_group)
    if (experts + redundant) % gpus:
        need = (-experts) % gpus
        raise ScenarioError(f"{experts} routed + {redundant} redundant experts cannot fill {gpus} GPUs "
                            f"({c.nodes} nodes x {c.gpus_per_node}) with equal slots",
                            path="placement.redundant_experts",
                            fix=f"use redundant_experts = {need} (+ a multiple of {gpus}), or change the GPU count")
    if redundant > experts * (gpus - 1):
        raise ScenarioError(f"{redundant} redundant experts is more replicas than GPUs can usefully hold",
                            path="placement.redundant_experts", fix="use fewer redundant experts")
    nics = c.inter_node.nics_per_node or c.gpus_per_node
    if nics > c.gpus_per_node or c.gpus_per_node % nics:
        raise ScenarioError(f"{nics} NICs cannot be shared evenly by {c.gpus_per_node} GPUs",
                            path="cluster.inter_node.nics_per_node",
                            fix="use a divisor of gpus_per_node (default: one NIC per GPU)")


def _check_layers(m) -> None:
    """The layer rule must leave at least one MoE block, and name blocks of this model."""
    from moesim.model.moe import MoEModel
    if m.first_k_dense_replace >= m.num_hidden_layers:
        raise ScenarioError("leaves no MoE layer", path="model.first_k_dense_replace",
                            fix=f"use a value below num_hidden_layers ({m.num_hidden_layers})")
    if m.ffn_kinds and len(m.ffn_kinds) != m.num_hidden_layers:
        raise ScenarioError(f"{len(m.ffn_kinds)} FFN kinds for {m.num_hidden_layers} blocks", path="model.ffn_kinds",
                            fix="give one per block (moe, dense or none), or none (the MoE rule)")
    if any(not 0 <= i < m.num_hidden_layers for i in m.mlp_only_layers):
        raise ScenarioError(f"names a block outside 0..{m.num_hidden_layers - 1}", path="model.mlp_only_layers",
                            fix="list block indices of this model")
    if not MoEModel.from_spec(m).moe_layer_ids:
        raise ScenarioError("leaves no MoE layer", path="model.mlp_only_layers",
                            fix="keep at least one block that the layer rule makes MoE")
    _check_attention_kinds(m)


def _check_attention_kinds(m) -> None:
    """One known attention kind per block, and what each kind needs of the model."""
    kinds = m.attention_kinds
    if kinds and len(kinds) != m.num_hidden_layers:
        raise ScenarioError(f"{len(kinds)} kinds for {m.num_hidden_layers} blocks", path="model.attention_kinds",
                            fix="give one attention kind per block, or none (every block of the default kind)")
    for i, name in enumerate(kinds):
        if name == FULL:
            continue
        if name not in LAYER_KINDS:
            raise ScenarioError(LAYER_KINDS.unknown(name), path=f"model.attention_kinds.{i}",
                                fix="`moesim list layer-kinds` describes each")
        need = LAYER_KINDS.get(name).requires(m)
        if need:
            raise ScenarioError(f"a {name} block needs {need}", path=f"model.attention_kinds.{i}",
                                fix=f"set model.{need}")


def check_stats_file(s: Scenario) -> None:
    """Load a histogram or trace once so that a bad file is reported at load time, naming the field."""
    stats = s.router.stats
    if not hasattr(stats, "path"):
        return
    from moesim.model.moe import MoEModel
    from moesim.routing.sources import SourceError, load_histogram, load_trace
    layers, experts = MoEModel.from_spec(s.model).num_moe_layers, s.model.n_routed_experts
    try:
        if stats.kind == "trace":
            ids, _ = load_trace(stats.path, layers, experts)
            top_k = s.top_k
            if ids.shape[2] != top_k:
                raise SourceError(f"the trace has top-{ids.shape[2]}, the scenario routes top-{top_k}: "
                                  f"set router.top_k={ids.shape[2]}")
        else:
            load_histogram(stats.path, stats.key, stats.step, layers, experts)
    except (SourceError, OSError, ValueError) as exc:
        raise ScenarioError(f"{stats.path}: {exc}", path="router.stats") from None


def _check_offload(s: Scenario) -> None:
    """An offload section needs a host, one node, inference, and a plan the model can take."""
    o, c = s.offload, s.cluster
    if o is None:
        return
    if c.host is None:
        raise ScenarioError("offload needs the host side of the machine", path="cluster.host",
                            fix="name a host, e.g. host: workstation-4090 (see `moesim list hosts`)")
    if c.nodes != 1:
        raise ScenarioError(f"offload is modelled on one machine, not {c.nodes} nodes", path="cluster.nodes",
                            fix="use nodes: 1 (gpus_per_node GPUs share the host)")
    if s.workload.mode == "training" or s.workload.micro_batches != 1:
        raise ScenarioError("offload runs model inference with one micro-batch", path="workload",
                            fix="use mode: decode or prefill, micro_batches: 1")
    if o.plan == "layers":
        host_moe_layers(s)  # raises naming the field
    if o.gpu_expert_bytes is not None and o.gpu_expert_share is not None:
        raise ScenarioError("give the expert budget one way", path="offload.gpu_expert_share",
                            fix="set gpu_expert_bytes or gpu_expert_share, not both")
    if c.host.unified and o.miss != "fetch" and o.home == "dram":
        raise ScenarioError("unified memory has no separate host DRAM", path="offload.home", fix="use home: nvme")
    if s.router.rule != "token_choice":
        raise ScenarioError(f"offload routes with token choice, not {s.router.rule}", path="router.rule",
                            fix="use rule: token_choice")


def host_moe_layers(s: Scenario) -> list[int]:
    """The MoE layers (0-based among MoE layers) whose experts ``offload.plan: layers`` keeps on the host:
    ``llama_cpp``'s flags read as llama.cpp reads them, the first ``cpu_moe_layers``, or the listed ones."""
    from moesim.config import llamacpp
    o, moe = s.offload, MoEModel.from_spec(s.model)
    layers = moe.num_moe_layers
    if o.llama_cpp is not None:
        try:
            return llamacpp.host_layers(o.llama_cpp, moe.moe_layer_ids, moe.gated)
        except llamacpp.LlamaCppError as exc:
            raise ScenarioError(str(exc), path="offload.llama_cpp",
                                fix="give llama.cpp's placement flags, e.g. '--n-cpu-moe 20'") from None
    if isinstance(o.cpu_moe_layers, int):
        if o.cpu_moe_layers > layers:
            raise ScenarioError(f"cpu_moe_layers {o.cpu_moe_layers} exceeds the model's {layers} MoE layers",
                                path="offload.cpu_moe_layers", fix=f"use 0..{layers}")
        return list(range(o.cpu_moe_layers))
    if any(x >= layers for x in o.cpu_moe_layers):
        raise ScenarioError(f"cpu_moe_layers {o.cpu_moe_layers}: the model has MoE layers 0..{layers - 1}",
                            path="offload.cpu_moe_layers", fix=f"list MoE layers below {layers}")
    return sorted(set(o.cpu_moe_layers))
