"""Write the small request traces shipped here, one per public format, from a fixed seed.

They are generated (not recorded): 400 requests, Poisson arrivals at 6 requests/s, lognormal prompts (mean
1,500 tokens) and answers (mean 250 tokens), written in the Azure LLM inference trace CSV layout, Mooncake's
JSONL layout and moesim's own CSV, so the readers and `moesim serve` can be tried without downloading.
Run: python scenarios/traces/make_samples.py
"""

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
rng = np.random.default_rng(20261202)
n = 400
t = np.cumsum(rng.exponential(1 / 6.0, n))
t -= t[0]


def lognormal(mean: float, cv: float) -> np.ndarray:
    s2 = np.log1p(cv**2)
    return np.clip(np.rint(rng.lognormal(np.log(mean) - s2 / 2, np.sqrt(s2), n)), 1, 16384).astype(int)


isl, osl = lognormal(1500, 0.8), lognormal(250, 0.8)
t0 = datetime(2023, 11, 16, 18, 0, 0)
azure = ["TIMESTAMP,ContextTokens,GeneratedTokens"] + [
    f"{(t0 + timedelta(seconds=float(x))).strftime('%Y-%m-%d %H:%M:%S.%f')}0,{a},{b}" for x, a, b in zip(t, isl, osl)]
(HERE / "sample-azure.csv").write_text("\n".join(azure) + "\n")
(HERE / "sample-mooncake.jsonl").write_text("".join(
    json.dumps({"timestamp": int(round(x * 1e3)), "input_length": int(a), "output_length": int(b),
                "hash_ids": []}) + "\n" for x, a, b in zip(t, isl, osl)))
(HERE / "sample-requests.csv").write_text("arrival_s,input_tokens,output_tokens\n" + "".join(
    f"{x:.6f},{a},{b}\n" for x, a, b in zip(t, isl, osl)))
