"""Import kernel latencies measured by NVIDIA aiconfigurator on real GPUs and fit moesim's pieces to them.

    pip install aiconfigurator-core pandas pyarrow        # the database ships in aiconfigurator-core's wheel
    python -m moesim.calibrate.import_aic --system h100_sxm --backend sglang --version 0.5.14 --gpu h100 \\
        --name h100-sglang

writes ``moesim/config/catalog/profiles/<name>.json`` (a ``moesim-silicon/1`` profile, label ``silicon``). Only the
importer needs aiconfigurator, pandas and pyarrow; the profile is plain JSON and moesim reads it without them.

What is imported: the fused MoE kernel table (``moe/<backend>/<version>/moe_perf.parquet``), single GPU
(``moe_ep_size`` = ``moe_tp_size`` = 1: the collector's own definition of a row), the Triton ``fused_moe``
lane, BF16 and FP8 block weights. Split (nothing held out is used to fit):
- every 4th model shape (sorted) is held out whole;
- on the other shapes, balanced rows at even positions of the token grid are fitted, odd ones held out
  (token counts off the fitted grid);
- every power-law row is held out (fitted on balanced rows only).
A (shape, dtype) series whose weight streaming would exceed the GPU's datasheet HBM bandwidth is physically
impossible as labelled and is excluded, with the reason recorded in the profile.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from moesim.calibrate.aic_deepep import fit_nvlink, fit_startups, impossible_series, read_deepep_rows
from moesim.calibrate.aic_records import records as _records
from moesim.config import catalog
from moesim.hw.costs.fitting import pack_rows
from moesim.hw.costs.silicon import (
    FLOP_EDGES,
    FORMAT,
    TERMS,
    WEIGHT_BYTES,
    SiliconProfile,
    fit_curves,
    fit_moe,
    held_out_errors,
    shape_key,
)

LANE = "sglang_fused_moe_triton"
LICENCE = ("Data from NVIDIA aiconfigurator (https://github.com/ai-dynamo/aiconfigurator), Apache License 2.0, "
           "Copyright (c) NVIDIA CORPORATION & AFFILIATES. Rows reduced and refitted by moesim.")


def data_root(explicit: str | None) -> Path:
    """aiconfigurator-core's ``systems/data`` folder: the given one, or the installed package's."""
    if explicit:
        return Path(explicit)
    spec = importlib.util.find_spec("aiconfigurator_core")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("error: aiconfigurator-core is not installed (fix: pip install aiconfigurator-core, "
                 "or pass --data <aiconfigurator_core/systems/data>)")
    return Path(list(spec.submodule_search_locations)[0]) / "systems" / "data"


def _tool_version(root: Path) -> str:
    """aiconfigurator-core's version: the installed package's, else the dist-info beside an unpacked wheel."""
    try:
        from importlib.metadata import version
        return version("aiconfigurator-core")
    except Exception:  # a --data folder without the package installed
        found = sorted(root.parent.parent.parent.glob("aiconfigurator_core-*.dist-info"))
        return found[-1].name.removeprefix("aiconfigurator_core-").removesuffix(".dist-info") if found else "unknown"


def read_moe_rows(path: Path) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Rows of one GPU's fused-MoE lane in moesim's names, and the table's device/framework/version."""
    recs = [r for r in _records(path) if int(r["moe_ep_size"]) == 1 and int(r["moe_tp_size"]) == 1
            and r["kernel_source"] == LANE and r["moe_dtype"] in WEIGHT_BYTES]
    if not recs:
        sys.exit(f"error: {path} has no single-GPU {LANE} rows in {sorted(WEIGHT_BYTES)} "
                 "(fix: choose another --version or --backend)")
    meta = {"device": str(recs[0]["device"]), "framework": str(recs[0]["framework"]),
            "version": str(recs[0]["version"])}
    rows = [{"hidden": int(r["hidden_size"]), "inter": int(r["inter_size"]), "top_k": int(r["topk"]),
             "experts": int(r["num_experts"]), "dtype": str(r["moe_dtype"]), "tokens": int(r["num_tokens"]),
             "distribution": str(r["distribution"]), "latency_s": float(r["latency"]) * 1e-3}  # table: ms
            for r in recs]
    return sorted(rows, key=lambda r: (shape_key(r), r["distribution"], r["tokens"])), meta


GEMM_LANES = {"bfloat16": "sglang_torch_linear", "fp8_block": "sglang_deepgemm_gemm_nt_f8f8bf16"}
GEMM_MIN_NK = 512  # model projections and FFNs; tiny GEMMs are launch-bound and noisy
GEMM_M = (1, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)  # fitted: even positions


def read_gemm(root: Path, system: str, version: str) -> tuple[dict[str, Any] | None, str | None]:
    """The GEMM table reduced to GEMM_M rows per (n, k, dtype) with n, k ≥ GEMM_MIN_NK, fitted and split
    like the MoE table: every 4th (n, k) pair held out whole; the other pairs fitted at m = 1, 8, 32, …,
    32768 (even positions of GEMM_M) and held out at m = 4, 16, 64, …, 16384. Returns the profile's
    ``gemm`` body (None without a table) and where it came from."""
    from moesim.hw.costs.silicon_gemm import TERMS as GTERMS
    from moesim.hw.costs.silicon_gemm import GemmModel, fit_gemm, gemm_curves
    folder = root / system / "gemm" / "sglang" / version
    path = next((folder / f"gemm_perf{e}" for e in (".parquet", ".csv") if (folder / f"gemm_perf{e}").is_file()), None)
    if path is None:
        return None, None
    rows = [{"m": int(r["m"]), "n": int(r["n"]), "k": int(r["k"]), "dtype": str(r["gemm_dtype"]),
             "latency_s": float(f"{float(r['latency']) * 1e-3:.6g}")} for r in _records(path)
            if GEMM_LANES.get(str(r["gemm_dtype"])) == r["kernel_source"] and int(r["m"]) in GEMM_M
            and min(int(r["n"]), int(r["k"])) >= GEMM_MIN_NK]
    pairs = sorted({(r["n"], r["k"]) for r in rows})
    held_pairs = set(pairs[3::4])
    fit, held = [], []
    for r in sorted(rows, key=lambda r: (r["dtype"], r["n"], r["k"], r["m"])):
        short = "bf16" if r["dtype"] == "bfloat16" else "fp8"
        if (r["n"], r["k"]) in held_pairs:
            held.append({**r, "group": f"gemm {short}: held-out shapes"})
        elif GEMM_M.index(r["m"]) % 2 == 0:
            fit.append(r)
        else:
            held.append({**r, "group": f"gemm {short}: m off the fitted grid"})
    coef = fit_gemm(fit)
    body = {"terms": list(GTERMS), "kernels": GEMM_LANES, "coef": coef, "curves": gemm_curves(fit, coef),
            "rows_fit": pack_rows_gemm(fit), "rows_held_out": pack_rows_gemm(held)}
    body["held_out_error_percent"] = GemmModel(body).held_out_errors()
    return body, str(path.relative_to(root))


def pack_rows_gemm(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows packed like the MoE rows, latencies kept to 6 significant digits (the tables' noise is percents)."""
    keys = ("m", "n", "k", "dtype", "latency_s", "group")
    return pack_rows([{**{k: r[k] for k in keys if k in r}, "latency_s": float(f"{r['latency_s']:.6g}")}
                      for r in rows], keys)


# kept rows (the profile stays small): heads per GPU >= 8 (fewer are launch-bound toy shapes), head_dim 128
# (the catalogue's GQA models), batch <= 512
ATTN_MIN_HEADS = 8


def read_attention(root: Path, system: str, version: str) -> tuple[dict[str, Any] | None, str | None]:
    """SGLang's attention tables (FlashAttention-3 lane, BF16 activations and KV cache, no sliding window;
    MLA without tensor parallelism), as moesim rows per family (``moesim.hw.costs.silicon_attn``). Held out: every
    4th (heads, kv, d) shape of the GQA tables whole, and every other remaining row."""
    from moesim.hw.costs.silicon_attn import AttentionModel, fit_attention
    rows: list[dict[str, Any]] = []
    tables = {"gqa_prefill": ("attention", "context_attention_perf"),
              "gqa_decode": ("attention", "generation_attention_perf"),
              "mla_prefill": ("mla", "context_mla_perf"), "mla_decode": ("mla", "generation_mla_perf")}
    where = None
    for fam, (folder, table) in tables.items():
        base = root / system / folder / "sglang" / version
        path = next((base / f"{table}{e}" for e in (".parquet", ".csv") if (base / f"{table}{e}").is_file()), None)
        if path is None:
            continue
        where = str(base.relative_to(root).parent)
        for r in _records(path):
            if r.get("kv_cache_dtype") != "bfloat16" or int(r.get("tp_size", 1)) != 1:
                continue
            if fam.startswith("gqa") and (r["kernel_source"] != "fa3" or int(r["window_size"]) != 0
                                          or r["attn_dtype"] != "bfloat16" or int(r["num_heads"]) < ATTN_MIN_HEADS
                                          or int(r["head_dim"]) != 128 or int(r["batch_size"]) > 512):
                continue
            row = {"family": fam, "batch": int(r["batch_size"]), "heads": int(r["num_heads"]),
                   "latency_s": float(f"{float(r['latency']) * 1e-3:.6g}")}
            if fam.startswith("gqa"):
                row.update(kv=int(r["num_key_value_heads"]), d=int(r["head_dim"]))
            if fam.endswith("decode"):
                row["ctx"] = int(r["step"]) + 1
            else:
                row["seq"] = int(r["isl"])
            rows.append(row)
    if not rows:
        return None, None
    shapes = sorted({(r["heads"], r["kv"], r["d"]) for r in rows if "kv" in r})
    held_shapes = set(shapes[3::4])
    fit, held = [], []
    for j, r in enumerate(sorted(rows, key=lambda r: tuple(str(r.get(k)) for k in ("family", "heads", "kv", "d",
                                                                                      "batch", "ctx", "seq")))):
        if (r["heads"], r.get("kv"), r.get("d")) in held_shapes:
            held.append({**r, "group": f"attention {r['family']}: held-out shapes"})
        elif j % 2:
            held.append({**r, "group": f"attention {r['family']}: off the fitted rows"})
        else:
            fit.append(r)
    keys = ("family", "batch", "heads", "kv", "d", "ctx", "seq", "latency_s", "group")
    # one column set for every family: sizes a family lacks (MLA's kv and d, decode's seq) are stored as 0
    pad = lambda rs: [{"kv": 0, "d": 0, "ctx": 0, "seq": 0, **r} for r in rs]  # noqa: E731
    body = {"coef": fit_attention(fit), "rows_fit": pack_rows(pad(fit), keys),
            "rows_held_out": pack_rows(pad(held), keys)}
    body["held_out_error_percent"] = AttentionModel(body).held_out_errors()
    return body, where


def split(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(fit rows, held-out rows with a ``group``) as the module docstring describes."""
    shapes = sorted({(r["hidden"], r["inter"], r["top_k"], r["experts"]) for r in rows})
    held_shapes = set(shapes[3::4])
    fit, held = [], []
    by_series: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        short = r["dtype"].split("_")[0].replace("bfloat16", "bf16")
        if (r["hidden"], r["inter"], r["top_k"], r["experts"]) in held_shapes:
            kind = "held-out shapes, balanced" if r["distribution"] == "balanced" else "held-out shapes, power law"
            held.append({**r, "group": f"moe {short}: {kind}"})
        elif r["distribution"] != "balanced":
            held.append({**r, "group": f"moe {short}: {r['distribution'].replace('_', ' ')} (fitted shapes)"})
        else:
            by_series.setdefault(shape_key(r), []).append(r)
    for series in by_series.values():
        for j, r in enumerate(sorted(series, key=lambda r: r["tokens"])):
            if j % 2 == 0:
                fit.append(r)
            else:
                held.append({**r, "group": f"moe {r['dtype'].split('_')[0].replace('bfloat16', 'bf16')}: "
                                           "token counts off the fitted grid"})
    return fit, held


def build_profile(rows: list[dict[str, Any]], meta: dict[str, str], gpu: str, name: str,
                  source: str, tool_version: str) -> dict[str, Any]:
    """The profile document: fit on the fit rows, curves from them, errors on the held-out rows."""
    entry = catalog.gpu_entry(gpu)
    hbm = float(entry["hbm_bandwidth"]["value"])
    bad = impossible_series(rows, hbm)
    kept = [r for r in rows if shape_key(r) not in bad]
    fit, held = split(kept)
    coef = fit_moe(fit)
    doc = {
        "format": FORMAT, "name": name, "label": "silicon",
        "provenance": {"label": "silicon", "source": source, "tool": f"aiconfigurator {tool_version}",
                       "device_name": meta["device"], "framework": f"{meta['framework']} {meta['version']}",
                       "kernel": LANE, "imported_on": dt.date.today().isoformat(), "licence": LICENCE,
                       "command": "python -m moesim.calibrate.import_aic " + " ".join(sys.argv[1:]),
                       "excluded_series": bad},
        "gpu": {**entry, "name": meta["device"]},
        "moe": {"terms": list(TERMS), "flop_edges": list(FLOP_EDGES), "coef": coef,
                "curves": fit_curves(fit, coef), "rows_fit": pack_rows(fit), "rows_held_out": pack_rows(held)},
    }
    doc["moe"]["held_out_error_percent"] = held_out_errors(SiliconProfile(name, doc))
    return doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m moesim.calibrate.import_aic", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--system", default="h100_sxm", help="aiconfigurator system folder (h100_sxm, h200_sxm, ...)")
    ap.add_argument("--backend", default="sglang")
    ap.add_argument("--version", default="0.5.14", help="backend version folder of the MoE table")
    ap.add_argument("--gpu", default="h100", help="moesim catalogue GPU whose figures the profile carries")
    ap.add_argument("--name", default=None, help="profile name (default: <gpu>-<backend>)")
    ap.add_argument("--data", default=None, help="aiconfigurator_core/systems/data (default: the installed one)")
    ap.add_argument("--deepep-version", default="0.5.12", help="SGLang version folder of the DeepEP tables")
    ap.add_argument("--gemm-version", default="0.5.14", help="SGLang version folder of the GEMM table")
    ap.add_argument("-o", "--out", default=None, help="output JSON (default: the catalogue's profiles folder)")
    a = ap.parse_args(argv)
    name = a.name or f"{a.gpu}-{a.backend}"
    rel = Path(a.system) / "moe" / a.backend / a.version / "moe_perf.parquet"
    path = data_root(a.data) / rel
    if not path.is_file() and path.with_suffix(".csv").is_file():
        rel, path = rel.with_suffix(".csv"), path.with_suffix(".csv")
    if not path.is_file():
        sys.exit(f"error: no table {path} (fix: check --system/--backend/--version against {data_root(a.data)})")
    tool_version = _tool_version(data_root(a.data))
    rows, meta = read_moe_rows(path)
    doc = build_profile(rows, meta, a.gpu, name, f"aiconfigurator-core systems/data/{rel.as_posix()}", tool_version)
    gemm, gemm_where = read_gemm(data_root(a.data), a.system, a.gemm_version)
    if gemm:
        doc["gemm"] = {**gemm, "source": f"aiconfigurator-core systems/data/{gemm_where}"}
        _print_errors(gemm["held_out_error_percent"])
    attn, attn_where = read_attention(data_root(a.data), a.system, a.gemm_version)
    if attn:
        doc["attention"] = {**attn, "source": f"aiconfigurator-core systems/data/{attn_where}"}
        _print_errors(attn["held_out_error_percent"])
    deepep, where = read_deepep_rows(data_root(a.data), a.system, a.deepep_version)
    if deepep:
        lat = float(doc["gpu"]["collective_latency"]["value"])
        bw, deepep = fit_nvlink(deepep, lat)
        startups, deepep = fit_startups(deepep, bw, float(doc["gpu"]["nvlink_latency"]["value"]))
        doc["gpu"]["a2a_startup"] = {
            "value": startups, "label": "silicon",
            "source": f"DeepEP kernels at 1 and 4 tokens on one node ({where}, aiconfigurator {tool_version}), "
                      "minus the transfer at the fitted NVLink: [dispatch, combine] seconds per algorithm"}
        doc["gpu"]["a2a_nvlink_bandwidth"] = {
            "value": {"hierarchical": bw, "low_latency": bw}, "label": "silicon",
            "source": f"DeepEP normal kernels on one node ({where}, aiconfigurator {tool_version}): the NVLink "
                      "rate its all-to-all reaches, fitted on the rows marked fitted in deepep.rows (used for "
                      "low latency too); NCCL collectives keep nvlink_bandwidth"}
        doc["deepep"] = {"source": f"aiconfigurator-core systems/data/{where}", "rows": deepep,
                         "nvlink_Bps": bw, "note": "one node (EP8), DeepSeek-V3 shape, normal kernels on 24 SMs; "
                         "the NVLink bandwidth is fitted on the normal rows with >= 512 tokens (every other one), "
                         "the kernels' start-ups on the rows with 1 and 4 tokens; moesim validate simulates the "
                         "others (held out) with the engine"}
        print(f"  DeepEP achievable NVLink (normal kernels, one node): {bw / 1e9:.0f} GB/s; start-ups (us) "
              + ", ".join(f"{a} {d * 1e6:.1f}/{c * 1e6:.1f}" for a, (d, c) in startups.items()))
    out = Path(a.out) if a.out else catalog.profile_dir() / f"{name}.json"
    out.write_text(json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {out}: {len(doc['moe']['rows_fit']['rows'])} rows fitted, "
          f"{len(doc['moe']['rows_held_out']['rows'])} held out, "
          f"{len(doc['provenance']['excluded_series'])} series excluded")
    _print_errors(doc["moe"]["held_out_error_percent"])
    return 0


def _print_errors(errors: dict[str, dict[str, float]]) -> None:
    for group, e in errors.items():
        print(f"  {group}: n={e['n']} MAPE {e['mape']:.1f}% P90 {e['p90']:.1f}% max {e['max']:.1f}% "
              f"bias {e['bias']:+.1f}%")


if __name__ == "__main__":
    raise SystemExit(main())
