"""llama.cpp (llama-server, the tree llama-cpp-python 0.3.36 vendors): an offload scenario as one
``llama-server`` command. Attention and dense weights on the GPU (``-ngl 999``), the MoE layers moesim keeps
on the host as ``--cpu-moe``, ``--n-cpu-moe N`` or one ``-ot`` naming their blocks (moesim.config.llamacpp).

llama.cpp places whole layers (a layer's experts are one tensor per matrix), keeps the placement fixed,
and runs the experts it keeps on the CPU there. What moesim's plan says beyond that is a note, with the
``--set offload.llama_cpp=...`` that simulates exactly what the command does.
"""

from __future__ import annotations

import math

from moesim.config import llamacpp
from moesim.config.schema import Scenario
from moesim.iteration.checks import host_moe_layers
from moesim.launch.base import Command, Launcher
from moesim.launch.local import LocalLaunch, offload_of, whole_layers_within_budget
from moesim.model.moe import MoEModel

VERSION = "llama-cpp-python-0.3.36"
PORT = 8080
QUANT = {"q4_k_m": "Q4_K_M", "q8_0": "Q8_0", "fp4": "Q4_K_M", "int4": "Q4_K_M", "fp8": "Q8_0", "int8": "Q8_0",
         "bf16": "BF16", "fp16": "F16"}


def host_layers(s: Scenario) -> tuple[list[int], str | None]:
    """The MoE layers llama.cpp should keep on the CPU for ``s``'s plan, and a note where that is not exactly
    moesim's plan (None where it is)."""
    o, moe = s.offload, MoEModel.from_spec(s.model)
    n = moe.num_moe_layers
    if o.plan == "layers":
        return host_moe_layers(s), None
    if o.plan == "host":
        return list(range(n)), None
    keep = whole_layers_within_budget(s)
    return list(range(n - keep)), (
        f"moesim's plan '{o.plan}' keeps single experts; llama.cpp places whole layers, so the command keeps the "
        f"last {keep} of {n} MoE layers on the GPU, the layers that fit in the same expert memory")


def render(s: Scenario) -> LocalLaunch:
    o = offload_of(s, "llama.cpp")
    moe = MoEModel.from_spec(s.model)
    host, approx = host_layers(s)
    moe_args = llamacpp.args_for(host, moe.moe_layer_ids)
    w = s.workload
    seqs = max(1, w.tokens_per_gpu) if w.mode == "decode" else 1
    ctx = max(w.context_tokens, 1) + (w.tokens_per_gpu if w.mode == "prefill" else 0)
    argv = ("llama-server", "-m", "$MODEL_PATH", "-ngl", "999", *moe_args, "-c", str(ctx * seqs),
            "-np", str(seqs), "-t", str(s.cluster.host.cpu_cores), "--host", "0.0.0.0", "--port", str(PORT))
    notes = [approx] if approx else []
    notes += _notes(s)
    spec = " ".join(moe_args) or "-ngl 999"
    placement = {"cpu_moe_layers": host, "gpu_moe_layers": [i for i in range(moe.num_moe_layers) if i not in host],
                 "blocks_on_cpu": [moe.moe_layer_ids[i] for i in host],
                 "summary": f"{len(host)} of {moe.num_moe_layers} MoE layers' experts on the CPU ({spec})",
                 "moesim_set": None if s.cluster.host.unified else
                 f"--set offload='{{llama_cpp: \"{spec}\", steps: {o.steps}}}'"}
    quant = QUANT.get(s.model.weight_dtype, s.model.weight_dtype)
    return LocalLaunch("llama.cpp", VERSION, s, (Command("local", "all", argv, 1),), placement, {}, tuple(notes),
                       (("MODEL_PATH", f"the model's GGUF file (weights as simulated: {s.model.weight_dtype}, e.g. "
                                       f"a {quant} quant)"),))


def _notes(s: Scenario) -> list[str]:
    o, out = s.offload, []
    if o.cache != "static":
        out.append(f"llama.cpp keeps no expert cache: the command is the plan's starting set, fixed (moesim "
                   f"simulated cache: {o.cache})")
    if o.miss != "cpu":
        out.append(f"llama.cpp runs the experts it keeps on the CPU there when decoding (moesim simulated miss: "
                   f"{o.miss}); large prompt batches copy them to the GPU instead (--no-op-offload stops that)")
    if o.prefetch != "none":
        out.append("llama.cpp does not prefetch experts")
    if s.cluster.host.unified:
        out.append("unified memory: llama.cpp's CPU and GPU read the same memory, so --n-cpu-moe only chooses where "
                   "experts compute; moesim has no CPU-expert model for unified memory (offload.miss cpu needs a "
                   "separate host DRAM), so this command cannot be simulated as it runs")
    if s.cluster.gpus_per_node > 1:
        out.append(f"llama.cpp splits layers over the {s.cluster.gpus_per_node} GPUs (--split-mode layer); moesim "
                   "splits each layer's experts over them: the same layers stay on the CPU, the GPUs' shares differ")
    if s.workload.mode == "decode" and s.workload.tokens_per_gpu > 1:
        out.append(f"-np {s.workload.tokens_per_gpu} slots decode together as moesim's batch; -c is their "
                   f"total context ({math.ceil(s.workload.context_tokens):,} tokens each)")
    return out


LLAMA_CPP = Launcher("llama.cpp", VERSION, render, local=True)
