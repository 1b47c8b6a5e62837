"""vLLM 0.33.0: ``vllm serve`` per instance node, data parallel attention with expert parallel MoE.

Flags as that version's parser defines them (flags/vllm-0.33.0.json), JSON-valued ones with the fields
their config classes take. vLLM 0.33 cannot import an expert placement: redundant experts become EPLB's
``num_redundant_experts`` and vLLM balances them online from its own window (the launch says so).
"""

from __future__ import annotations

import json
import math

from moesim.launch.base import Command, Launch, Launcher
from moesim.launch.facts import Facts, RoleFacts, mem_notes
from moesim.util.errors import ScenarioError

VERSION = "0.33.0"
ALL2ALL = {"low_latency": "deepep_low_latency", "hierarchical": "deepep_high_throughput",
           "flat": "allgather_reducescatter"}
PORT, RPC_PORT = 8000, 13345


def render(f: Facts) -> Launch:
    commands = []
    for r in f.roles:
        entry = ("vllm", "serve", "$MODEL_PATH")
        args = _args(f, r)
        if r.nodes == 1:
            commands.append(Command(r.name, "all", (*entry, *args), len(entry)))
            continue
        local = r.gpus_per_node // r.attention_tp
        multi = ["--data-parallel-size-local", str(local), "--data-parallel-address", "$HEAD_ADDR",
                 "--data-parallel-rpc-port", str(RPC_PORT)]
        commands.append(Command(r.name, "head", (*entry, *args, *multi), len(entry)))
        commands.append(Command(r.name, "others", (*entry, *args, *multi, "--headless", "--data-parallel-start-rank",
                                                   f"$((NODE_RANK * {local}))"), len(entry)))
    return Launch("vllm", VERSION, f, tuple(commands), {}, tuple(_notes(f)))


def _args(f: Facts, r: RoleFacts) -> list[str]:
    if r.moe_tp not in (1, r.gpus):
        raise ScenarioError(f"vLLM shards experts by expert parallelism over all {r.gpus} GPUs or by tensor "
                            f"parallelism over them, not {r.moe_tp}-way inside EP groups", path="workload.moe_tp",
                            fix=f"use moe_tp 1 (expert parallel) or {r.gpus}")
    if r.attention_tp > r.gpus_per_node:
        raise ScenarioError(f"attention TP {r.attention_tp} spans nodes: vLLM's data-parallel launch keeps a TP group "
                            "on one node", path="workload.attention_tp", fix=f"use at most {r.gpus_per_node}")
    a = ["--trust-remote-code", "--tensor-parallel-size", str(r.attention_tp)]
    if r.ranks > 1:
        a += ["--data-parallel-size", str(r.ranks)]
    if r.moe_tp == 1 and r.gpus > 1:
        algo = ALL2ALL.get(f.comm_algorithm) or ("deepep_low_latency" if r.name == "decode"
                                                   else "deepep_high_throughput")
        a += ["--enable-expert-parallel", "--all2all-backend", algo]
    if r.redundant_experts or r.placement not in ("contiguous", "round_robin"):
        a += ["--enable-eplb", "--eplb-config", json.dumps({"num_redundant_experts": r.redundant_experts})]
    a += ["--max-num-seqs", str(math.ceil(r.max_running / r.ranks)),
          "--max-num-batched-tokens", str(max(1, r.token_budget // r.ranks))]
    if r.mem_fraction is not None:
        a += ["--gpu-memory-utilization", f"{r.mem_fraction:.3f}"]
    if not r.prefix_cache:
        a.append("--disable-prefix-caching")
    if r.graph_max_per_rank:
        a += ["--max-cudagraph-capture-size", str(r.graph_max_per_rank)]
    if f.mtp_drafts:
        a += ["--speculative-config", json.dumps({"method": "mtp", "num_speculative_tokens": f.mtp_drafts})]
    if f.kv_fp8:
        a += ["--kv-cache-dtype", "fp8"]
    if r.name != "aggregated":
        a += ["--kv-transfer-config", json.dumps({"kv_connector": "NixlConnector", "kv_role": "kv_both"})]
    return a + ["--port", str(PORT)]


def _notes(f: Facts) -> list[str]:
    notes = mem_notes(f, "--gpu-memory-utilization")
    if f.hf_id is None:
        notes.append(f"set MODEL_PATH: moesim does not know where {f.model}'s weights are")
    if any(r.redundant_experts or r.placement not in ("contiguous", "round_robin") for r in f.roles):
        notes.append("vLLM 0.33 cannot load a placement: EPLB starts from the contiguous layout and rebalances "
                     "online (window_size 1000 steps, every 3000), so early iterations run less balanced than "
                     "simulated")
    sched = f.scenario.serving.scheduler
    if not all(r.mixed for r in f.roles):
        notes.append("vLLM V1 always mixes prefill chunks with decodes: the simulated prefill-first policy "
                     "is not available (simulate with serving.engine: vllm to compare)")
    if sched.admission == "guaranteed_no_evict":
        notes.append("admission guaranteed_no_evict has no vLLM flag: vLLM admits optimistically and preempts")
    if f.kind == "disaggregated":
        notes.append("prefill and decode instances exchange KV through NIXL; a proxy that sends each request to a "
                     "prefill then a decode instance goes in front (vLLM's disaggregated-serving examples; "
                     "not checked here)")
    elif f.roles[0].instances > 1:
        notes.append("the instances answer on port 8000 of their head nodes: put a load balancer in front")
    if any(not r.chunked_prefill for r in f.roles):
        notes.append("vLLM V1 always chunks prefills: chunked_prefill off has no flag")
    return notes


VLLM = Launcher("vllm", VERSION, render)
