"""KTransformers: an offload scenario as KTransformers runs it today, inside SGLang 0.5.23 with the
kt-kernel CPU experts (``--kt-weight-path``, ``--kt-num-gpu-experts``, ``--kt-cpuinfer``; flags checked
against SGLang's parser), and for KTransformers' older ``local_chat`` a rule file of GPU experts.

SGLang's KT wrapper (``sglang/srt/layers/moe/kt_ep_wrapper.py``) runs experts ``0 .. N-1`` of every MoE layer
on the GPU and the others on the CPU (ids ``>= N`` are masked out of the GPU kernel): moesim's plan
``first``. The older optimize rules (KTransformers' FAQ and its DeepSeek rule files) move whole layers'
experts to the GPU with ``generate_op: KExpertsMarlin``; the first rule that matches a module wins.
"""

from __future__ import annotations

from moesim.config.schema import Scenario
from moesim.launch.base import Command, Launcher
from moesim.launch.local import LocalLaunch, offload_of, whole_layers_within_budget
from moesim.model.moe import MoEModel

VERSION = "sglang-0.5.23"  # the SGLang release whose --kt-* flags the command uses
PORT = 30000


def gpu_experts(s: Scenario) -> tuple[int, str | None]:
    """``--kt-num-gpu-experts`` for ``s``'s plan (experts per layer on the GPU, by id), and a note where that
    is not exactly moesim's plan."""
    from moesim.offload.tiers import first_per_gpu, plan_tiers
    o, moe = s.offload, MoEModel.from_spec(s.model)
    if o.plan == "host":
        return 0, None
    per_gpu = first_per_gpu(s, plan_tiers(s).slots) if o.plan == "first" else \
        plan_tiers(s).slots // moe.num_moe_layers
    n = min(moe.experts, per_gpu * s.cluster.gpus_per_node)
    if o.plan == "first":
        return n, None
    return n, (f"moesim's plan '{o.plan}' chooses experts by {'layer' if o.plan == 'layers' else 'popularity'}; "
               f"KTransformers keeps experts 0..{n - 1} of every layer (by id) on the GPU, as many as fit in the "
               "same expert memory")


def render(s: Scenario) -> LocalLaunch:
    o = offload_of(s, "KTransformers")
    moe = MoEModel.from_spec(s.model)
    n, approx = gpu_experts(s)
    w = s.workload
    seqs = max(1, w.tokens_per_gpu) if w.mode == "decode" else 1
    argv = ("python3", "-m", "sglang.launch_server", "--model-path", "$MODEL_PATH", "--kt-weight-path",
            "$KT_WEIGHT_PATH", "--kt-cpuinfer", str(s.cluster.host.cpu_cores), "--kt-threadpool-count", "1",
            "--kt-num-gpu-experts", str(n), "--tp-size", str(s.cluster.gpus_per_node), "--max-running-requests",
            str(seqs), "--context-length", str(max(w.context_tokens, 1) + max(w.tokens_per_gpu, 1)),
            "--trust-remote-code", "--host", "0.0.0.0", "--port", str(PORT))
    notes = ([approx] if approx else []) + _notes(s)
    files, layers = _rules(s, moe)
    if not s.model.name.startswith("deepseek"):
        notes.append("no optimize-rule file: KTransformers documents GPU-expert rules for DeepSeek models only")
    elif not files:
        notes.append("no optimize-rule file: KTransformers' own DeepSeek rule files keep every expert on the CPU")
    which = f"experts 0..{n - 1} of each" if n else "no experts of any"
    placement = {"gpu_experts_per_layer": n, "summary": f"{which} of the {moe.num_moe_layers} MoE layers on the GPU "
                 f"(--kt-num-gpu-experts {n}), the others on the CPU",
                 "rules_gpu_moe_layers": layers,
                 "moesim_set": f"--set offload='{{plan: first, gpu_experts_per_layer: {n}, cache: static, miss: cpu, "
                 f"steps: {o.steps}}}'"}
    env = (("MODEL_PATH", "the model's Hugging Face folder (config, tokenizer, GPU weights)"),
           ("KT_WEIGHT_PATH", "the CPU experts' weights converted for kt-kernel"))
    return LocalLaunch("ktransformers", VERSION, s, (Command("local", "all", argv, 3),), placement, files,
                       tuple(notes), env)


def _notes(s: Scenario) -> list[str]:
    o, out = s.offload, []
    if o.cache != "static" or o.miss != "cpu" or o.prefetch != "none":
        out.append(f"KTransformers keeps the GPU experts fixed and runs the others on the CPU (moesim simulated cache "
                   f"{o.cache}, miss {o.miss}, prefetch {o.prefetch})")
    out.append(f"--kt-method is left at SGLang's default (AMXINT4: INT4 CPU experts on AMX); moesim simulated "
               f"{s.model.weight_dtype} weights")
    if s.cluster.host.unified:
        out.append("KTransformers' CPU experts need x86 AMX or AVX-512 cores; this host has unified memory")
    return out


def _rules(s: Scenario, moe: MoEModel) -> tuple[dict[str, str], list[int]]:
    """The older local_chat's GPU-expert rules (whole layers within the same expert memory), for DeepSeek
    models; nothing for others."""
    if not s.model.name.startswith("deepseek"):
        return {}, []
    keep = whole_layers_within_budget(s) if s.offload.plan != "host" else 0
    layers = list(range(moe.num_moe_layers - keep, moe.num_moe_layers))
    if not layers:
        return {}, []
    blocks = "|".join(str(moe.moe_layer_ids[i]) for i in layers)
    text = "\n".join([
        "# moesim: GPU experts for KTransformers' optimize rules (local_chat --optimize_config_path). The first",
        "# rule that matches a module wins: put this rule before the experts rule of the model's rule file.",
        f"# The last {len(layers)} MoE layers' experts fit in the GPU memory moesim's plan gives experts; the",
        "# FAQ notes that GPU experts need use_cuda_graph False.",
        "- match:",
        f'    name: "^model\\\\.layers\\\\.({blocks})\\\\.mlp\\\\.experts$"',
        "  replace:",
        "    class: ktransformers.operators.experts.KTransformersExperts",
        "    kwargs:",
        '      generate_device: "cuda:0"',
        '      generate_op: "KExpertsMarlin"',
        "  recursive: False", ""])
    return {"optimize-rules-gpu-experts.yaml": text}, layers


KTRANSFORMERS = Launcher("sglang", "0.5.23", render, local=True)
