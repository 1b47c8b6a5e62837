"""llama.cpp's placement of expert weights, both ways: which MoE layers' experts a llama.cpp command keeps on
the CPU (``offload.llama_cpp``), and the flags that keep a given set there (``moesim export-launch --engine
llama.cpp``). Pure: strings and layer indices in and out.

What llama.cpp does (common/arg.cpp and common/common.h of the tree llama-cpp-python 0.3.36 vendors;
docs/sources.md):
- ``--n-cpu-moe N`` (``-ncmoe``) adds, for blocks 0..N-1, the override ``blk\\.{i}`` + ``LLM_FFN_EXPS_REGEX``
  → CPU; blocks count every transformer block, dense ones included, so on DeepSeek-V3 (3 dense blocks)
  ``--n-cpu-moe 5`` puts MoE layers 0 and 1 on the CPU.
- ``--cpu-moe`` (``-cmoe``) adds ``LLM_FFN_EXPS_REGEX`` → CPU: every MoE layer.
- ``-ot`` / ``--override-tensor PATTERN=BUFFER,...`` adds each pair in order.
- A tensor takes the buffer of the first override whose pattern is found in its name (``std::regex_search``)
  and the default (the GPU, with ``-ngl`` covering the block) otherwise. A layer's experts are three
  tensors, ``blk.{i}.ffn_gate_exps.weight``, ``ffn_up_exps`` and ``ffn_down_exps``, each holding every
  expert of the layer: llama.cpp places whole layers, never single experts.
"""

from __future__ import annotations

import re
import shlex

EXPS_REGEX = r"\.ffn_(up|down|gate|gate_up)_(ch|)exps"  # LLM_FFN_EXPS_REGEX
CPU = "CPU"  # the CPU backend's buffer type name
SWITCHES = {"--cpu-moe", "-cmoe"}
VALUED = {"--n-cpu-moe", "-ncmoe", "-ot", "--override-tensor", "-ngl", "--gpu-layers", "--n-gpu-layers"}


class LlamaCppError(ValueError):
    """Arguments moesim cannot read as a placement of experts (the message names the fix)."""


def overrides(args: str) -> list[tuple[str, str]]:
    """The (pattern, buffer type) overrides llama.cpp would build from the placement flags in ``args``, in
    order. Flags other than the placement ones, and ``-ngl`` below every layer, are refused."""
    try:
        words = shlex.split(args)
    except ValueError as exc:
        raise LlamaCppError(f"cannot split {args!r} as a shell line ({exc})") from None
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(words):
        flag, eq, value = words[i].partition("=") if words[i].startswith("--") else (words[i], "", "")
        i += 1
        if flag in SWITCHES:
            out.append((EXPS_REGEX, CPU))
            continue
        if flag not in VALUED:
            raise LlamaCppError(f"{words[i - 1]!r} is not one of llama.cpp's expert placement flags; give only "
                                "--n-cpu-moe N, --cpu-moe, -ot PATTERN=BUFFER and -ngl")
        if not eq:
            if i >= len(words):
                raise LlamaCppError(f"{flag} needs a value")
            value, i = words[i], i + 1
        out += _valued(flag, value)
    return out


def _valued(flag: str, value: str) -> list[tuple[str, str]]:
    if flag in ("-ngl", "--gpu-layers", "--n-gpu-layers"):
        if value not in ("all", "auto") and not (value.isdigit() and int(value) >= 999):
            raise LlamaCppError(f"{flag} {value}: moesim keeps attention and the dense weights on the GPU; use "
                                f"{flag} all (or 999) and place experts with --n-cpu-moe / -ot")
        return []
    if flag in ("--n-cpu-moe", "-ncmoe"):
        if not value.isdigit():
            raise LlamaCppError(f"{flag} {value!r}: give a number of blocks, e.g. {flag} 10")
        return [(f"blk\\.{i}{EXPS_REGEX}", CPU) for i in range(int(value))]
    out = []
    for pair in value.split(","):
        pattern, eq, buffer = pair.partition("=")
        if not eq or not pattern or not buffer:
            raise LlamaCppError(f"{flag} {pair!r}: give PATTERN=BUFFER, e.g. {flag} 'blk\\.(1[0-9])\\.ffn_.*_exps=CPU'")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise LlamaCppError(f"{flag} {pattern!r} is not a regular expression ({exc})") from None
        out.append((pattern, buffer))
    return out


def tensor_names(block: int, gated: bool = True) -> list[str]:
    """The expert tensors of one MoE block in a GGUF file (``gated``: SwiGLU experts have a gate matrix)."""
    kinds = ("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps") if gated else ("ffn_up_exps", "ffn_down_exps")
    return [f"blk.{block}.{k}.weight" for k in kinds]


def buffer_of(name: str, rules: list[tuple[str, str]]) -> str | None:
    """The buffer type of tensor ``name``: the first override whose pattern is found in it, else None (the
    default device)."""
    return next((buf for pattern, buf in rules if re.search(pattern, name)), None)


def host_layers(args: str, moe_blocks: tuple[int, ...], gated: bool = True) -> list[int]:
    """The MoE layers (indices into ``moe_blocks``, the blocks that hold one) whose experts ``args`` keep on
    the CPU. A layer whose expert tensors would be split between CPU and GPU is refused: moesim keeps an
    expert's matrices together."""
    rules = overrides(args)
    out = []
    for layer, block in enumerate(moe_blocks):
        where = {name: buffer_of(name, rules) == CPU for name in tensor_names(block, gated)}
        if len(set(where.values())) > 1:
            cpu = ", ".join(n.split(".")[2] for n, c in where.items() if c)
            raise LlamaCppError(f"block {block}: {cpu} on the CPU, its other expert tensors on the GPU; moesim keeps "
                                "an expert's matrices together: match all of blk.N.ffn_*_exps")
        if all(where.values()):
            out.append(layer)
    return out


def args_for(host: list[int], moe_blocks: tuple[int, ...]) -> list[str]:
    """The shortest llama.cpp flags that keep exactly the MoE layers ``host`` (indices into ``moe_blocks``) on
    the CPU: none, ``--cpu-moe``, ``--n-cpu-moe N`` when they are the MoE layers below block N, else one
    ``-ot`` naming their blocks."""
    want = sorted(set(host))
    if not want:
        return []
    if len(want) == len(moe_blocks):
        return ["--cpu-moe"]
    blocks = [moe_blocks[i] for i in want]
    if want == list(range(len(want))):  # a prefix of the MoE layers: every block up to the last of them
        return ["--n-cpu-moe", str(blocks[-1] + 1)]
    return ["-ot", f"blk\\.({'|'.join(str(b) for b in blocks)}){EXPS_REGEX}={CPU}"]
