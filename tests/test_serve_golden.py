"""The serving DES's outputs pinned: every case below runs on hand-made surfaces that vary with tokens and
context, and the SHA-256 of its summary, request table and timeline must match ``golden/serve_des.json``
(written by the serving DES before its decode fast path; ``MOESIM_WRITE_GOLDEN=1`` rewrites it, which a
change of behaviour must say in its commit). The cases cover what the fast path must leave exact: open and
closed loops, one and several instances, disaggregation, preemption, both admissions, mixed batches, MTP,
attention-DP balance and engine overheads."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from moesim.iteration.scenario import scenario_from_dict
from moesim.serve import simulate_serving
from moesim.serve.deploy import deployment_of
from moesim.serve.run import requests_of
from moesim.serve.surface import Surface

GOLDEN = Path(__file__).parent / "golden" / "serve_des.json"

LAW = {"input_tokens": {"kind": "lognormal", "mean": 600, "cv": 0.6, "max": 4000},
       "output_tokens": {"kind": "lognormal", "mean": 120, "cv": 0.7, "max": 800}}
DISAGG = {"kind": "disaggregated", "prefill": {"gpus": 2}, "decode": {"gpus": 2}}
CASES: dict[str, tuple[dict, dict]] = {  # name: (serving, cluster extras)
    "open": ({"arrival": {"kind": "poisson", "rate_per_s": 6}, "requests": 300, **LAW}, {}),
    "open-light": ({"arrival": {"kind": "poisson", "rate_per_s": 0.5}, "requests": 60, **LAW}, {}),
    "open-overload": ({"arrival": {"kind": "poisson", "rate_per_s": 40}, "requests": 300, **LAW,
                       "scheduler": {"max_batch": 16}}, {}),
    "open-two-instances": ({"arrival": {"kind": "poisson", "rate_per_s": 12}, "requests": 300, **LAW,
                            "deployment": {"kind": "aggregated", "ep_gpus": 2}}, {"gpn": 4}),
    "closed": ({"load": {"concurrency": 12}, "requests": 120, **LAW}, {}),
    "closed-two-instances": ({"load": {"concurrency": 24}, "requests": 200, **LAW,
                              "deployment": {"kind": "aggregated", "ep_gpus": 2}}, {"gpn": 4}),
    "preempt": ({"arrival": {"kind": "poisson", "rate_per_s": 1000}, "requests": 300,
                 "input_tokens": {"kind": "constant", "value": 8000},
                 "output_tokens": {"kind": "lognormal", "mean": 300, "cv": 0.5, "max": 900},
                 "scheduler": {"max_batch": 1024, "kv_memory_fraction": 1.0}}, {"gpu": "h100", "layers": 16}),
    "no-evict": ({"arrival": {"kind": "poisson", "rate_per_s": 1000}, "requests": 300,
                  "input_tokens": {"kind": "constant", "value": 8000},
                  "output_tokens": {"kind": "lognormal", "mean": 300, "cv": 0.5, "max": 900},
                  "scheduler": {"max_batch": 1024, "kv_memory_fraction": 1.0,
                                "admission": "guaranteed_no_evict"}}, {"gpu": "h100", "layers": 16}),
    "mixed": ({"arrival": {"kind": "poisson", "rate_per_s": 8}, "requests": 200, **LAW,
               "scheduler": {"policy": "mixed", "token_budget": 1024}}, {}),
    "alternate": ({"arrival": {"kind": "poisson", "rate_per_s": 8}, "requests": 200, **LAW,
                   "scheduler": {"policy": "alternate"}}, {}),
    "mtp": ({"arrival": {"kind": "poisson", "rate_per_s": 6}, "requests": 200, **LAW,
             "mtp": {"draft_tokens": 2, "acceptance": 0.7}}, {}),
    "disagg": ({"arrival": {"kind": "poisson", "rate_per_s": 8}, "requests": 200, **LAW,
                "deployment": DISAGG}, {"nodes": 2, "gpn": 2}),
    "disagg-closed": ({"load": {"concurrency": 16}, "requests": 160, **LAW, "deployment": DISAGG,
                       "overheads": {"host_s": 0.002, "request_s": 0.01, "handoff_s": 0.005}},
                      {"nodes": 2, "gpn": 2}),
    "balance-overheads": ({"arrival": {"kind": "poisson", "rate_per_s": 10}, "requests": 200, **LAW,
                           "scheduler": {"max_batch": 32, "dp_balance_timeout_iters": 3},
                           "overheads": {"host_s": 0.003, "request_s": 0.02}}, {"gpn": 4}),
}


def surface(mode: str, base: float, per_token: float, per_context: float) -> Surface:
    """A surface that rises with tokens per GPU and, for decode, with tokens x context (the KV read)."""
    tokens, contexts = (1, 8, 64, 512, 4096), (1, 256, 2048, 8192)
    t = tuple(tuple(base + per_token * x + per_context * x * c * (mode == "decode") + 1e-7 * c for c in contexts)
              for x in tokens)
    imb = tuple(tuple(1.0 + 0.5 / (1 + x) + c * 1e-5 for c in contexts) for x in tokens)
    return Surface(mode, tokens, contexts, t, imb)


def run(name: str) -> str:
    serving, extra = CASES[name]
    raw = {"seed": 5, "model": {"base": "mixtral-8x7b", "num_hidden_layers": extra.get("layers", 4)},
           "cluster": {"gpu": extra.get("gpu", "h200"), "nodes": extra.get("nodes", 1),
                       "gpus_per_node": extra.get("gpn", 1)}, "serving": serving}
    s = scenario_from_dict(raw)
    dep = deployment_of(s)
    surf = {(r.name, m): surface(m, 0.004 if m == "decode" else 0.01, 2e-5 if m == "decode" else 6e-5, 3e-9)
            for r in dep.roles for m in ("prefill", "decode")}
    res = simulate_serving(s, dep, requests_of(s), surf)
    h = hashlib.sha256(json.dumps(res.summary, sort_keys=True).encode())
    for table in (res.requests, res.timeline):
        for k in sorted(table):
            h.update(k.encode() + np.asarray(table[k]).astype(str).tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("name", sorted(CASES))
def test_serving_outputs_match_the_pinned_ones(name):
    if os.environ.get("MOESIM_WRITE_GOLDEN"):
        doc = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
        doc[name] = run(name)
        GOLDEN.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    assert run(name) == json.loads(GOLDEN.read_text())[name]
