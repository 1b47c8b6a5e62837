"""From a simulated deployment to a running engine: launch commands and the files they read, one renderer
per engine version (``LAUNCHERS``; ``moesim list launchers``). Every command is checked against the flags
that engine version's own parser defines (moesim.launch.flags) before it is returned.

A new engine (or version) is one module with a ``render(facts) -> Launch`` and one ``LAUNCHERS.register``,
plus its flags fixture written by ``tools/extract_engine_flags.py``.
"""

from __future__ import annotations

from moesim.config.schema import Scenario
from moesim.launch.base import Command, Launch, Launcher
from moesim.launch.dynamo import DYNAMO, TRTLLM
from moesim.launch.facts import Facts, facts_of
from moesim.launch.flags import problems
from moesim.launch.ktransformers import KTRANSFORMERS
from moesim.launch.llamacpp import LLAMA_CPP
from moesim.launch.local import LocalLaunch
from moesim.launch.sglang import SGLANG
from moesim.launch.vllm import VLLM
from moesim.util.errors import ScenarioError
from moesim.util.registry import Registry

LAUNCHERS: Registry[Launcher] = Registry("launcher", "--engine")
LAUNCHERS.register("sglang", SGLANG, help=f"SGLang {SGLANG.version}: python -m sglang.launch_server per instance "
                   "(attention DP, DeepEP, EPLB placement file, PD disaggregation)")
LAUNCHERS.register("vllm", VLLM, help=f"vLLM {VLLM.version}: vllm serve per instance (DP + expert parallel, DeepEP, "
                   "EPLB redundancy, NIXL disaggregation)")
LAUNCHERS.register("trtllm", TRTLLM, help="TensorRT-LLM 1.3.0rc29 workers under NVIDIA Dynamo 1.6.1 (python -m "
                   "dynamo.trtllm; attention DP, EP, disaggregation; engine options as notes)")
LAUNCHERS.register("dynamo", DYNAMO, help="NVIDIA Dynamo 1.6.1: frontend and SGLang 0.5.21 workers (python -m "
                   "dynamo.sglang; NIXL disaggregation, EPLB placement file)")
LAUNCHERS.register("llama-cpp", LLAMA_CPP, help=f"llama.cpp ({LLAMA_CPP.version}): llama-server for an offload "
                   "scenario (--n-cpu-moe / -ot for the MoE layers kept on the CPU)")
LAUNCHERS.register("ktransformers", KTRANSFORMERS, help="KTransformers in SGLang 0.5.23 (kt-kernel CPU experts, "
                   "--kt-num-gpu-experts) for an offload scenario; GPU-expert rules for its older local_chat")


def render(s: Scenario, engine: str) -> Launch | LocalLaunch:
    """The launch of ``s``'s serving deployment on ``engine`` (a LAUNCHERS name). ScenarioError where the
    engine cannot run it as simulated; RuntimeError where a rendered flag is not the engine's (a moesim bug:
    the CLI reports it as an internal error)."""
    launcher = LAUNCHERS.get(engine)
    if launcher.local:
        out = launcher.render(s)
    elif s.offload is not None:
        raise ScenarioError(f"{engine} serves models whose experts are all in GPU memory; this scenario keeps some "
                            "on the host (offload)", path="offload",
                            fix="use --engine llama-cpp or ktransformers, or a scenario without offload")
    else:
        out = launcher.render(facts_of(s))
    bad = [p for c in out.commands for p in problems(c.args, *(c.parser or (launcher.engine, launcher.version)))]
    if bad:
        raise RuntimeError(f"the {engine} launch has flags {launcher.engine} {launcher.version} would refuse "
                          f"({'; '.join(bad)}): please report it with the scenario")
    return out


__all__ = ["LAUNCHERS", "Command", "Facts", "Launch", "Launcher", "LocalLaunch", "facts_of", "render"]
