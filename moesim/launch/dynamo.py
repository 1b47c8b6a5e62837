"""NVIDIA Dynamo 1.6.1: a frontend (``python -m dynamo.frontend``: HTTP, pre-processing, routing) and one
worker process per instance node, SGLang workers (``python -m dynamo.sglang``, SGLang 0.5.21 as Dynamo
1.6.1 pins it) or TensorRT-LLM workers (``python -m dynamo.trtllm``, TensorRT-LLM 1.3.0rc29 as pinned).
Flags are checked against the parsers Dynamo builds (flags/dynamo-*-1.6.1.json, by
tools/extract_engine_flags.py from the ai-dynamo 1.6.1 wheel; the SGLang worker's include SGLang 0.5.21's).

Workers and the frontend find each other through etcd (``--discovery-backend etcd``, Dynamo's default).
TensorRT-LLM's own engine options (``--trtllm.<field> <value>``) are not written: the TensorRT-LLM 1.3.0rc29
wheel that defines them is not reachable to check them, so what they would say is a note.
"""

from __future__ import annotations

import json

from moesim.launch import sglang
from moesim.launch.base import Command, Launch, Launcher
from moesim.launch.facts import Facts, RoleFacts, mem_notes
from moesim.launch.flags import fixture
from moesim.util.errors import ScenarioError

VERSION = "1.6.1"
HTTP_PORT = 8000
FRONTEND = ("python3", "-m", "dynamo.frontend")


def _frontend(f: Facts) -> Command:
    router = "kv" if f.scenario.serving.scheduler.prefix_cache else "round-robin"
    argv = (*FRONTEND, "--http-port", str(HTTP_PORT), "--router-mode", router, "--discovery-backend", "etcd")
    return Command("frontend", "head", argv, len(FRONTEND), ("dynamo-frontend", VERSION))


def render_sglang(f: Facts) -> Launch:
    """Dynamo with SGLang 0.5.21 workers: SGLang's flags as moesim.launch.sglang writes them, in 0.5.21's
    spelling, with NIXL moving the KV cache between the prefill and decode sides."""
    entry = ("python3", "-m", "dynamo.sglang")
    files, commands = {}, [_frontend(f)]
    for r in f.roles:
        args = sglang._args(f, r, legacy_dp=True)
        args = args[: args.index("--host")]  # the frontend serves HTTP; workers register through etcd
        if "--disaggregation-transfer-backend" in args:
            args[args.index("--disaggregation-transfer-backend") + 1] = "nixl"
        if r.redundant_experts or r.placement != "contiguous":
            sglang.check_placeable(f, "SGLang 0.5.21 (Dynamo 1.6.1)", "0.5.21",
                                   fixture("dynamo-sglang", VERSION)["expert_location_models"])
            files[f"placement-{r.name}.json"] = json.dumps(sglang.sglang_expert_location(r.scenario)[0]) + "\n"
            args += ["--init-expert-location", f"placement-{r.name}.json"]
        commands.append(Command(r.name, "all", (*entry, *args, "--discovery-backend", "etcd"), len(entry)))
    notes = [*mem_notes(f, "--mem-fraction-static"), *_common_notes(f)]
    return Launch("dynamo", VERSION, f, tuple(commands), files, tuple(notes))


def render_trtllm(f: Facts) -> Launch:
    """TensorRT-LLM 1.3.0rc29 workers under Dynamo 1.6.1: parallel sizes, attention DP, batch and token
    limits, the KV memory share and the disaggregation side as Dynamo's TRT-LLM worker flags."""
    entry = ("python3", "-m", "dynamo.trtllm")
    commands = [_frontend(f)]
    for r in f.roles:
        commands.append(Command(r.name, "head" if r.nodes > 1 else "all", (*entry, *_trtllm_args(r)), len(entry)))
    notes = [*mem_notes(f, "--free-gpu-memory-fraction"), *_common_notes(f), *_trtllm_notes(f)]
    return Launch("trtllm", "1.3.0rc29", f, tuple(commands), {}, tuple(notes))


def _trtllm_args(r: RoleFacts) -> list[str]:
    if r.moe_tp not in (1, r.gpus):
        raise ScenarioError(f"TensorRT-LLM through Dynamo sets experts' TP from --expert-parallel-size alone; "
                            f"moe_tp {r.moe_tp} inside EP groups is not one of its layouts",
                            path="workload.moe_tp", fix=f"use moe_tp 1 (EP {r.gpus}) or {r.gpus} (TP experts)")
    per = r.ranks if r.attention_tp < r.gpus else 1  # with attention DP each rank schedules its own batch
    a = ["--model", "$MODEL_PATH", "--tensor-parallel-size", str(r.gpus), "--expert-parallel-size", str(r.ep_size),
         "--gpus-per-node", str(r.gpus_per_node), "--max-batch-size", str(-(-r.max_running // per)),
         "--max-num-tokens", str(-(-r.token_budget // per))]
    if r.attention_tp < r.gpus:
        if r.attention_tp != 1:
            raise ScenarioError(f"TensorRT-LLM's attention DP runs one rank per GPU; attention TP {r.attention_tp} "
                                "inside DP groups is not one of its layouts", path="workload.attention_tp",
                                fix="use attention_tp 1 (attention DP) or the instance's GPU count (attention TP)")
        a.append("--enable-attention-dp")
    if r.mem_fraction is not None:
        a += ["--free-gpu-memory-fraction", f"{r.mem_fraction:.3f}"]
    a += ["--disaggregation-mode", "agg" if r.name == "aggregated" else r.name]
    return a + ["--discovery-backend", "etcd"]


def _common_notes(f: Facts) -> list[str]:
    out = [f"start etcd first (Dynamo's discovery); the frontend answers on port {HTTP_PORT}: run it once, "
           "with ROLE=frontend on any node"]
    if f.hf_id is None:
        out.append(f"set MODEL_PATH: moesim does not know where {f.model}'s weights are")
    return out


def _trtllm_notes(f: Facts) -> list[str]:
    """What TensorRT-LLM would also need, in its engine options (``--trtllm.<field> <value>``), unchecked."""
    out = []
    r = max(f.roles, key=lambda x: x.redundant_experts)
    if r.redundant_experts:
        slots = r.scenario.model.n_routed_experts + r.redundant_experts
        out.append(f"EPLB: TensorRT-LLM takes redundant experts as MoE load-balancer slots ({slots} for "
                   f"{r.redundant_experts} redundant); give them in its engine options (moe_config), not checked here")
    if any(x.ep_size > 1 for x in f.roles) and f.comm_algorithm != "flat":
        out.append("DeepEP-style all-to-all: TensorRT-LLM's wide-EP MoE backend is an engine option (moe_config), "
                   "not checked here")
    if f.mtp_drafts:
        out.append(f"MTP with {f.mtp_drafts} draft token(s): an engine option (speculative_config), not checked here")
    if any(x.nodes > 1 for x in f.roles):
        out.append("a multi-node TensorRT-LLM instance starts under MPI (srun or mpirun running "
                   "trtllm-llmapi-launch around the worker command): only its head command is written")
    return out


DYNAMO = Launcher("dynamo-sglang", VERSION, render_sglang)
TRTLLM = Launcher("dynamo-trtllm", VERSION, render_trtllm)
