"""The serving summary as text a person reads (the JSON document is what programs parse)."""

from __future__ import annotations

from typing import Any


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e3:,.1f}"


def serve_text(doc: dict[str, Any]) -> str:
    tp, slo = doc["throughput"], doc["slo"]
    p = slo["percentile"]
    dep = doc["deployment"]
    shape = dep["kind"] if dep["kind"] == "aggregated" else (
        f"disaggregated: prefill {dep['prefill']['gpus']} GPUs, decode {dep['decode']['gpus']} GPUs")
    lines = [f"{doc['scenario']}: {doc['model']} on {doc['nodes']} x {doc['gpus_per_node']} {doc['gpu']}, {shape}",
             f"workload: {doc['requests']} requests ({doc['workload_source']}), simulated {doc['duration_s']:.1f} s"
             f"; scope {doc['throughput_scope']}",
             "",
             f"{'latency (ms)':<14}{'mean':>10}{'p50':>10}{'p90':>10}{'p99':>10}"]
    for key, name in (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("e2e_s", "end-to-end")):
        d = doc[key]
        lines.append(f"{name:<14}{_ms(d['mean']):>10}{_ms(d['p50']):>10}{_ms(d['p90']):>10}{_ms(d['p99']):>10}")
    lines += ["",
              f"throughput: {tp['output_tokens_per_s']:,.0f} output tokens/s ({tp['output_tokens_per_s_per_gpu']:,.1f}"
              f" per GPU, {tp['output_tokens_per_s_per_node']:,.0f} per node), {tp['requests_per_s']:.2f} requests/s",
              f"SLO (p{p} TTFT <= {slo['ttft_s'] * 1e3:g} ms, TPOT <= {slo['tpot_s'] * 1e3:g} ms): "
              f"{'met' if slo['met'] else 'NOT met'}; {slo['attainment']:.1%} of requests within both; goodput "
              f"{slo['goodput_requests_per_s']:.2f} requests/s, {slo['goodput_output_tokens_per_s']:,.0f} tokens/s",
              f"preemptions: {doc['preemptions']}"]
    for inst in doc["instances"]:
        kv = inst["kv_tokens_per_instance"]
        lines.append(f"  {inst['role']}: {inst['instances']} x {inst['gpus_per_instance']} GPUs, KV "
                     f"{'unbounded' if kv is None else f'{kv:,.0f} tokens'}, mean decode batch "
                     f"{inst['mean_decode_batch']:.1f}, GPU load max/mean {inst['gpu_load_max_over_mean'] or 1:.2f}, "
                     f"max queue {inst['max_waiting']}, KV use mean "
                     f"{inst['mean_kv_utilisation']:.0%} max {inst['max_kv_utilisation']:.0%}")
    if doc.get("kv_transfer_s", {}).get("mean") is not None:
        kt = doc["kv_transfer_s"]
        lines.append(f"  KV transfer: mean {_ms(kt['mean'])} ms, p99 {_ms(kt['p99'])} ms")
    lines.append("iteration surfaces (held-out interpolation error vs direct DES runs):")
    for key, v in doc["surfaces"].items():
        h = v["holdout_error"]
        err = "no held-out points" if not h else f"max {h['max']:.1%}, mean {h['mean']:.1%} on {h['points']} points"
        lines.append(f"  {key}: {v['points']} grid points, {err}; GPU load max/mean "
                     f"{v['gpu_load_max_over_mean']['min']:.2f}-{v['gpu_load_max_over_mean']['max']:.2f}")
    for role, m in doc.get("mixed_check", {}).items():
        lines.append(f"  {role}/mixed (composed from both surfaces): max {m['max_error']:.1%} vs direct DES runs of "
                     f"{len(m['points'])} mixed batches")
    return "\n".join(lines) + "\n"
