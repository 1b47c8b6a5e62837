"""One deployment's capacity at the SLO: the highest request rate whose serving run still meets the TTFT
and TPOT percentiles, found by bisection between a light load and an upper bound from the surfaces, for
each batch limit in turn (upwards, until a larger batch stops raising the capacity).
"""

from __future__ import annotations

import math
from typing import Any

from moesim.config.schema import Scenario
from moesim.iteration.scenario import scenario_from_dict
from moesim.plan.spec import EffortSpec
from moesim.serve.deploy import Deployment, deployment_of
from moesim.serve.run import check_fits, requests_of, simulate_serving
from moesim.serve.surface import Surface
from moesim.util.errors import MoesimError

LIGHT = 1 / 64  # the light-load probe, as a share of the upper bound
GAIN = 1.02  # a larger batch must raise the capacity by 2% to keep searching upwards


def rate_bound(dep: Deployment, surfaces: dict[tuple[str, str], Surface], isl: float, osl: float) -> float:
    """Requests/s the deployment could not exceed even without queueing: each instance's prefill rate
    (full token budgets) and decode rate (full batches, KV-bound), for mean prompt ``isl`` and answer ``osl``,
    combined over instances; an aggregated instance spends its time on both, so their times add."""
    rates = []
    for role in dep.roles:
        g, pre, dec = role.gpus_per_instance, math.inf, math.inf
        if role.prefills:
            k = max(1.0, role.prefill_budget / isl)
            pre = k / surfaces[(role.name, "prefill")](math.ceil(k * isl / g), isl)
        if role.decodes:
            n = max(1.0, min(role.max_running, role.kv_tokens / (isl + osl / 2)))
            dec = n / (osl * surfaces[(role.name, "decode")](math.ceil(n / g), isl + osl / 2))
        rates.append(role.instances / (1 / pre + 1 / dec))
    return min(rates)


def slots(dep: Deployment) -> int:
    """Sequences the deployment's decoding instances run at once (a serving run's length follows it)."""
    return sum(r.instances * r.max_running for r in dep.roles if r.decodes)


def _trial(s: Scenario, dep: Deployment, surfaces, rate: float, effort: EffortSpec, light: bool = False,
           verdict: bool = True) -> dict[str, Any]:
    """The serving run at ``rate``: enough requests to fill every decoding slot 3 times over (``light``:
    ``effort.light_requests``, the probe without queueing). ``verdict``: stop once the SLO verdict is
    certain and return only it (``whole`` runs the rate found again, to the end)."""
    n = effort.light_requests if light else int(min(effort.max_requests, max(effort.requests, 3 * slots(dep))))
    sv = s.serving
    arrival = sv.arrival.model_copy(update={"rate_per_s": rate})
    st = s.model_copy(update={"serving": sv.model_copy(update={"arrival": arrival, "requests": n,
                                                                "duration_s": None})})
    return simulate_serving(st, dep, requests_of(st), surfaces, verdict_only=verdict and not light).summary


def whole(summary: dict[str, Any], again) -> dict[str, Any]:
    """A trial's whole summary: ``summary`` itself, or where it holds only the verdict, ``again()``'s (the
    same run without stopping early, so the same figures a whole run gives)."""
    return again() if "decided_at_s" in summary["slo"] else summary


def _closed_trial(s: Scenario, dep: Deployment, surfaces, c: int, effort: EffortSpec, verdict: bool = True
                  ) -> dict[str, Any]:
    """The serving run with ``c`` requests in flight (one: ``effort.light_requests``, one after another);
    above one, ``verdict`` as ``_trial``."""
    n = effort.light_requests if c == 1 else int(min(effort.max_requests, max(effort.requests, 4 * c)))
    sv = s.serving
    st = s.model_copy(update={"serving": sv.model_copy(update={"load": sv.load.model_copy(update={"concurrency": c}),
                                                                "requests": n})})
    return simulate_serving(st, dep, requests_of(st), surfaces, verdict_only=verdict and c > 1).summary


def closed_capacity(s: Scenario, dep: Deployment, surfaces, effort: EffortSpec) -> dict[str, Any]:
    """Closed loop (``serving.load``): {concurrency, rate, summary} at the most requests in flight found that
    meet the SLO (bisection over integers up to the sequences the decoding instances can run), or {reason}."""
    top = max(1, slots(dep))
    one = _closed_trial(s, dep, surfaces, 1, effort)
    if not one["slo"]["met"]:
        p = one["slo"]["percentile"]
        return {"reason": f"misses the SLO even with one request in flight: p{p} TTFT "
                          f"{one['slo'][f'ttft_p{p}_s']:.3g} s, TPOT {one['slo'][f'tpot_p{p}_s'] * 1e3:.3g} ms"}
    lo, hi, best = 1, top, one
    full = _closed_trial(s, dep, surfaces, hi, effort)
    if full["slo"]["met"]:
        lo, best = hi, full
    while hi - lo > 1 and lo < top:
        mid = int(math.sqrt(lo * hi)) if hi > 2 * lo else (lo + hi) // 2
        mid = min(max(mid, lo + 1), hi - 1)
        res = _closed_trial(s, dep, surfaces, mid, effort)
        if res["slo"]["met"]:
            lo, best = mid, res
        else:
            hi = mid
    best = whole(best, lambda: _closed_trial(s, dep, surfaces, lo, effort, verdict=False))
    return {"concurrency": lo, "rate": best["throughput"]["requests_per_s"], "summary": best}


def capacity(s: Scenario, dep: Deployment, surfaces, effort: EffortSpec, isl: float, osl: float) -> dict[str, Any]:
    """{rate, summary} at the highest rate found that meets the SLO, or {reason} when even a light load
    misses it; closed loop: ``closed_capacity``."""
    if s.serving.load is not None:
        return closed_capacity(s, dep, surfaces, effort)
    bound = rate_bound(dep, surfaces, isl, osl)
    lo, hi = bound * LIGHT, bound * 1.2
    light = _trial(s, dep, surfaces, lo, effort, light=True)
    if not light["slo"]["met"]:
        p = light["slo"]["percentile"]
        return {"reason": f"misses the SLO even at a light load ({lo:.3g} requests/s): p{p} TTFT "
                          f"{light['slo'][f'ttft_p{p}_s']:.3g} s, TPOT {light['slo'][f'tpot_p{p}_s'] * 1e3:.3g} ms"}
    best = (lo, light)
    top = _trial(s, dep, surfaces, hi, effort)
    if top["slo"]["met"]:
        return {"rate": hi, "summary": whole(top, lambda: _trial(s, dep, surfaces, hi, effort, verdict=False))}
    for _ in range(effort.rate_steps):
        mid = math.sqrt(lo * hi)
        res = _trial(s, dep, surfaces, mid, effort)
        if res["slo"]["met"]:
            lo, best = mid, (mid, res)
        else:
            hi = mid
    rate = best[0]
    return {"rate": rate, "summary": whole(best[1], lambda: _trial(s, dep, surfaces, rate, effort, verdict=False))}


def search_batch(task: tuple[Any, int, dict[str, Any], str, dict, EffortSpec]) -> dict[str, Any]:
    """Worker: one deployment's capacity at one batch limit: its row (the capacity at the SLO, or why
    there is none), with ``_stop`` (larger batches need no search: the light load already misses) or the
    figures the next batch limit is judged by (``_tput``, ``_kv_short``: the KV cache holds fewer sequences
    per GPU than the limit)."""
    _key, b, raw, base_dir, surfaces, effort = task
    row: dict[str, Any] = {"max_batch": b}
    try:
        s = scenario_from_dict(raw, base_dir=base_dir)
        dep, req = deployment_of(s), requests_of(s)
        check_fits(dep, req)
        isl, osl = float(req.input_tokens.mean()), float(req.output_tokens.mean())
        res = capacity(s, dep, surfaces, effort, isl, osl)
    except MoesimError as exc:
        return {**row, "reason": str(exc).split(": ", 1)[-1]}
    if "reason" in res:
        return {**row, **res, "_stop": True}  # larger batches only lengthen steps: the light load misses again
    sm = res["summary"]
    kv_seqs = min(r.kv_tokens / r.gpus_per_instance for r in dep.roles if r.decodes)
    return {**row, "capacity_requests_per_s": res["rate"], "summary": _brief(sm),
            **({"capacity_concurrency": res["concurrency"]} if "concurrency" in res else {}),
            "_tput": sm["throughput"]["output_tokens_per_s"], "_kv_short": kv_seqs < b * (isl + osl / 2)}


def assemble(batches: list[int], found: dict[int, dict[str, Any]]) -> list[dict[str, Any]] | None:
    """One deployment's rows from its per-batch results (``search_batch``, by batch limit), searching the
    limits upwards until a larger batch stops raising the capacity by ``GAIN``, the light load misses the
    SLO, or the KV cache cannot hold a larger batch; the limits above get "not searched" rows. None while
    a result that decides is missing."""
    rows, prev = [], 0.0
    for i, b in enumerate(batches):
        r = found.get(b)
        if r is None:
            return None
        rows.append({k: v for k, v in r.items() if not k.startswith("_")})
        if r.get("_stop"):
            return rows
        if "_tput" not in r:
            continue
        if r["_tput"] < prev * GAIN:
            return rows + [{"max_batch": bb, "reason": f"not searched: max_batch {b} did not raise the capacity"}
                           for bb in batches[i + 1:]]
        prev = max(prev, r["_tput"])
        if r["_kv_short"]:
            return rows + [{"max_batch": bb, "reason": f"not searched: the KV cache holds fewer than {b} sequences "
                                                       "per GPU"} for bb in batches[i + 1:]]
    return rows


def _brief(sm: dict[str, Any]) -> dict[str, Any]:
    p = sm["slo"]["percentile"]
    return {"output_tokens_per_s": sm["throughput"]["output_tokens_per_s"],
            "requests_per_s": sm["throughput"]["requests_per_s"],
            "output_tokens_per_s_per_gpu": sm["throughput"]["output_tokens_per_s_per_gpu"],
            f"ttft_p{p}_s": sm["slo"][f"ttft_p{p}_s"], f"tpot_p{p}_s": sm["slo"][f"tpot_p{p}_s"],
            "ttft_p50_s": sm["ttft_s"]["p50"], "tpot_p50_s": sm["tpot_s"]["p50"],
            "attainment": sm["slo"]["attainment"], "preemptions": sm["preemptions"],
            "decode_batch_per_gpu": max(i["mean_decode_batch"] / i["gpus_per_instance"] for i in sm["instances"]
                                        if i["role"] != "prefill")}
