"""The human-readable summary of an offload run (``moesim run`` on a scenario with ``offload``)."""

from __future__ import annotations

from typing import Any

from moesim.offload.summary import PARTS

GB = 1e9


def describe_plan(s) -> str:
    """One line for ``moesim check``: the tier plan of an offload scenario (raises if it does not fit)."""
    from moesim.offload.tiers import plan_tiers
    p = plan_tiers(s)
    hbm = p.memory["hbm_per_gpu"]
    return (f"tier plan: {p.slots} expert slots per GPU ({_gb(hbm['expert_slots_bytes'])}), GPU memory "
            f"{_gb(hbm['total_bytes'])} of {_gb(hbm['usable_bytes'])} usable, experts' home "
            f"{p.memory['experts_home']}")


def _gb(x: float) -> str:
    """Bytes in GB, or MB / KB when small (a token's activations are kilobytes)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(x) >= scale or unit == "KB":
            return f"{x / scale:.2f} {unit}" if x else "0"
    return f"{x:.0f} B"


def table(d: dict[str, Any], max_layers: int = 12) -> str:
    """Tokens/s, where a token's time goes, the cache, the bytes per token and memory per tier."""
    c, mem, o = d["cache"], d["memory"], d["offload"]
    hbm, per = mem["hbm_per_gpu"], d["time_per_token_s"]
    decode = d["mode"] == "decode"
    batch = d.get("sequences_per_gpu", d.get("tokens_per_gpu"))
    lines = [f"{d['scenario']}: {d['model']} on {d['gpus']} x {d['gpu']}, host {d['host']}, {d['mode']}, "
             f"{batch} {'sequences' if decode else 'tokens'}/GPU" + (f", {d['steps']} steps" if decode else ""),
             f"  plan {o['plan']}, cache {o['cache']}, miss {o['miss']}, prefetch {o['prefetch']}, "
             f"home {mem['experts_home']}",
             f"  throughput            {d['tokens_per_s']:,.2f} tokens/s"
             + (f"   ({d['per_sequence_tokens_per_s']:,.2f} per sequence)" if decode else ""),
             f"  time per {'step' if decode else 'token'}        {per * 1e3:.3f} ms"]
    split = d["time_per_token_split_s"]
    lines += [f"    {k:<20}{split[k] * 1e3:10.3f} ms  {split[k] / per * 100 if per else 0:5.1f}%" for k in PARTS]
    u = c["expert_uses_per_step"]
    lines += [f"  expert cache          {c['slots_per_gpu']} slots/GPU ({c['scope']}), hit rate {c['hit_rate']:.3f} "
              f"(resident {c['resident_hit_rate']:.3f}, prefetched {c['prefetch_hit_rate']:.3f})",
              f"  expert uses per step  {u['gpu_cached']:.1f} cached, {u['gpu_prefetched']:.1f} prefetched, "
              f"{u['gpu_fetched']:.1f} fetched, {u['cpu']:.1f} on the CPU",
              f"  host bytes per token  {_gb(d['host_bytes_per_token']['total'])} (fetch "
              f"{_gb(d['host_bytes_per_token']['fetch'])}, prefetch {_gb(d['host_bytes_per_token']['prefetch'])}, "
              f"CPU activations {_gb(d['host_bytes_per_token']['cpu_activations'])})",
              f"  GPU memory            {_gb(hbm['total_bytes'])} of {_gb(hbm['usable_bytes'])} usable "
              f"(experts {_gb(hbm['expert_slots_bytes'])}, other weights {_gb(hbm['other_weights_bytes'])}, "
              f"KV {_gb(hbm['kv_cache_bytes'])}, staging {_gb(hbm['staging_bytes'])})",
              f"  host DRAM             {_gb(mem['dram_per_node']['experts_bytes'])} of "
              f"{_gb(mem['dram_per_node']['capacity_bytes'])}; NVMe {_gb(mem['nvme_per_node']['experts_bytes'])} of "
              f"{_gb(mem['nvme_per_node']['capacity_bytes'])}",
              "  hit rate per layer    " + " ".join(f"{x:.2f}" for x in c["per_layer_hit_rate"][:max_layers])
              + (" ..." if len(c["per_layer_hit_rate"]) > max_layers else "")]
    return "\n".join(lines) + "\n"
