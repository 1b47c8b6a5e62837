"""SGLang 0.5.23: ``python -m sglang.launch_server`` per instance node.

Flags as that version's ServerArgs defines them (flags/sglang-0.5.23.json): attention data parallelism is
``--attn-dp-size`` (``--enable-dp-attention`` is deprecated there), the decode CUDA-graph limit is
``--cuda-graph-max-bs-decode``. The expert placement goes in ``--init-expert-location`` as the JSON its
``init_by_mapping`` reads (moesim.studies.export.sglang_expert_location), one file per role.
"""

from __future__ import annotations

import json

from moesim.config import catalog
from moesim.launch.base import Command, Launch, Launcher
from moesim.launch.facts import Facts, RoleFacts, mem_notes
from moesim.launch.flags import fixture
from moesim.launch.placement_file import sglang_expert_location
from moesim.util.errors import ScenarioError

VERSION = "0.5.23"
ENTRY = ("python3", "-m", "sglang.launch_server")
# the SGLang model file each catalogue family runs on (sglang/srt/models/FILE.py, by the checkpoint's architecture)
MODEL_FILES = {"deepseek-v2": "deepseek_v2", "deepseek-v3": "deepseek_v2", "kimi-k2": "deepseek_v2",
               "qwen1.5-moe": "qwen2_moe", "qwen2-57b": "qwen2_moe", "qwen3-30b": "qwen3_moe",
               "qwen3-235b": "qwen3_moe",
               "qwen3.5": "qwen3_5", "gpt-oss": "gpt_oss", "nemotron-3": "nemotron_h", "mixtral": "mixtral",
               "dbrx": "dbrx", "olmoe": "olmoe", "llama4": "mllama4"}
DEEPEP_MODE = {"low_latency": "low_latency", "hierarchical": "normal"}  # moesim algorithm → --deepep-mode
SIDE_MODE = {"prefill": "normal", "decode": "low_latency"}  # auto: what each side of a PD deployment runs
PORT = 30000


def model_file(model: str) -> str | None:
    """The SGLang model file of a catalogue model (None: not a catalogue family moesim knows)."""
    return next((f for prefix, f in MODEL_FILES.items() if model.startswith(prefix)), None)


def check_placeable(f: Facts, engine: str, version: str, supported: list[str]) -> None:
    """Refuse a placement file the engine would ignore or mis-read: a model without an expert-location config
    there, or a scenario whose layer count is not the checkpoint's."""
    s = f.scenario
    known = model_file(f.model)
    if known not in supported:
        raise ScenarioError(f"{engine} {version} has no expert-location config for {f.model} (model file "
                            f"{known or 'unknown'}): it would ignore the placement", path="placement.kind",
                            fix="use placement.kind: contiguous with no redundant experts, or another engine")
    if f.model in catalog.model_names():
        layers = catalog.model_entry(f.model)["num_hidden_layers"]
        if s.model.num_hidden_layers != layers:
            raise ScenarioError(f"the scenario has {s.model.num_hidden_layers} layers where the {f.model} checkpoint "
                                f"has {layers}: the placement map would not match the weights",
                                path="model.num_hidden_layers", fix=f"remove the override (the model has {layers})")


def render(f: Facts) -> Launch:
    files: dict[str, str] = {}
    notes = _notes(f)
    commands = []
    for r in f.roles:
        args = _args(f, r)
        if r.redundant_experts or r.placement != "contiguous":
            check_placeable(f, "SGLang", VERSION, fixture("sglang", VERSION)["expert_location_models"])
            name = f"placement-{r.name}.json"
            doc, _ = sglang_expert_location(r.scenario)
            files[name] = json.dumps(doc) + "\n"
            args += ["--init-expert-location", name]
        commands.append(Command(r.name, "all", (*ENTRY, *args), len(ENTRY)))
    return Launch("sglang", VERSION, f, tuple(commands), files, tuple(notes))


def _args(f: Facts, r: RoleFacts, legacy_dp: bool = False) -> list[str]:
    """One role's SGLang flags. ``legacy_dp``: attention data parallelism as SGLang before 0.5.23 spells it
    (``--enable-dp-attention --dp-size``; 0.5.21, which Dynamo 1.6.1 runs, has no ``--attn-dp-size``)."""
    a = ["--model-path", "$MODEL_PATH", "--trust-remote-code", "--tp-size", str(r.gpus)]
    if r.attention_tp < r.gpus:
        a += ["--enable-dp-attention", "--dp-size", str(r.ranks)] if legacy_dp else ["--attn-dp-size", str(r.ranks)]
    if r.ep_size > 1:
        a += ["--ep-size", str(r.ep_size)]
        if f.comm_algorithm != "flat":
            mode = DEEPEP_MODE.get(f.comm_algorithm) or SIDE_MODE.get(r.name, "auto")
            a += ["--moe-a2a-backend", "deepep", "--deepep-mode", mode]
    if r.redundant_experts:
        a += ["--ep-num-redundant-experts", str(r.redundant_experts)]
    a += ["--max-running-requests", str(r.max_running)]
    a += ["--chunked-prefill-size", str(r.token_budget)] if r.chunked_prefill else \
        ["--chunked-prefill-size", "-1", "--max-prefill-tokens", str(r.token_budget)]
    if r.mem_fraction is not None:
        a += ["--mem-fraction-static", f"{r.mem_fraction:.3f}"]
    if not r.prefix_cache:
        a.append("--disable-radix-cache")
    if r.mixed:
        a.append("--enable-mixed-chunk")
    if r.scenario.workload.micro_batches > 1:  # two micro-batches overlapping compute and all-to-all
        a.append("--enable-two-batch-overlap")
    if r.graph_max_per_rank:
        a += ["--cuda-graph-max-bs-decode", str(r.graph_max_per_rank)]
    if f.mtp_drafts:
        d = f.mtp_drafts
        a += ["--speculative-algorithm", "EAGLE", "--speculative-num-steps", str(d), "--speculative-eagle-topk", "1",
              "--speculative-num-draft-tokens", str(d + 1)]
    if f.kv_fp8:
        a += ["--kv-cache-dtype", "fp8_e4m3"]
    if r.nodes > 1:
        a += ["--nnodes", str(r.nodes), "--node-rank", "$NODE_RANK", "--dist-init-addr", "$HEAD_ADDR:5000"]
    if r.name != "aggregated":
        a += ["--disaggregation-mode", r.name, "--disaggregation-transfer-backend", "mooncake"]
    return a + ["--host", "0.0.0.0", "--port", str(PORT)]


def _notes(f: Facts) -> list[str]:
    notes = mem_notes(f, "--mem-fraction-static")
    if f.hf_id is None:
        notes.append(f"set MODEL_PATH: moesim does not know where {f.model}'s weights are")
    several = f.kind == "disaggregated" or f.roles[0].instances > 1
    if several:
        notes.append("the instances answer on port 30000 of their head nodes; put SGLang's router in front "
                     "(pip install sglang-router; python -m sglang_router.launch_router" +
                     (" --pd-disaggregation --prefill http://P:30000 --decode http://D:30000" if f.kind ==
                      "disaggregated" else " --worker-urls http://A:30000 http://B:30000") + "; not checked here)")
    sched = f.scenario.serving.scheduler
    if sched.admission == "guaranteed_no_evict":
        notes.append("admission guaranteed_no_evict has no SGLang flag: SGLang admits optimistically and retracts")
    if sched.policy == "alternate":
        notes.append("scheduler policy alternate has no SGLang flag: SGLang runs prefill first")
    return notes


SGLANG = Launcher("sglang", VERSION, render)
