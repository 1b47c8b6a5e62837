"""Live calibration smoke tests (torch, CPU): shapes, formats and correctness, never timing."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[calibrate]')")

from moesim.calibrate import pieces as P  # noqa: E402
from moesim.calibrate.distributed import a2a_splits, run_job  # noqa: E402
from moesim.calibrate.run import calibrate  # noqa: E402
from moesim.calibrate.timing import measure  # noqa: E402
from moesim.hw.costs.measured import FORMAT, PIECES, Profile  # noqa: E402


def _dense_reference(x, w, k, ws):
    weights, ids = P.router(x, w, k)
    out = torch.zeros_like(x)
    for t in range(x.shape[0]):
        for j in range(k):
            e = ids[t, j]
            h = (torch.nn.functional.silu(x[t] @ ws[0][e]) * (x[t] @ ws[1][e])) @ ws[2][e]
            out[t] += weights[t, j] * h
    return out


@pytest.mark.parametrize("method", sorted(P.EXPERT_METHODS))
def test_every_expert_method_computes_the_moe_layer(method):
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(40, 32, generator=g), torch.randn(8, 32, generator=g)
    ws = P.expert_weights(8, 32, 16, torch.float32)
    out = P.moe_layer(x, w, 2, ws, method)
    assert torch.allclose(out, _dense_reference(x, w, 2, ws), atol=1e-4)


def test_group_limited_router_keeps_topk_groups():
    x, w = torch.randn(50, 16), torch.randn(16, 16)
    _, ids = P.router(x, w, 4, "sigmoid", n_group=4, topk_group=2)
    assert all(len(set((row // 4).tolist())) <= 2 for row in ids)


def test_measure_reports_a_distribution():
    m = measure(lambda: torch.randn(64, 64) @ torch.randn(64, 64), "cpu", threads=1, min_run_s=0.01)
    assert {"median_s", "p20_s", "p80_s", "n", "method", "retries"} <= set(m)
    assert m["p20_s"] <= m["median_s"] <= m["p80_s"] and m["n"] >= 5


def test_uneven_splits_conserve_bytes():
    for uneven in (False, True):
        m = a2a_splits(1000, 2, uneven)
        assert all(sum(row) == 1000 for row in m)
    assert a2a_splits(1000, 2, True)[0][1] == 750


@pytest.mark.slow  # two torch.distributed processes: seconds; CI runs it
def test_gloo_all_to_all_and_ep_layer_with_two_processes():
    pts = run_job("all_to_all", {"bytes": [4096], "uneven": [True], "reps": 3})
    assert pts[0]["bytes"] == 3072 and pts[0]["median_s"] > 0
    res = run_job("ep_layer", {"tokens": 32, "hidden": 32, "inter": 32, "experts": 4, "top_k": 2, "seed": 1,
                               "reps": 2, "logit_bias": [1.0, 0, 0, 0]})
    assert len(res["ids"]) == 2 and all(len(r) == 32 and len(r[0]) == 2 for r in res["ids"])


def test_smoke_calibration_writes_a_loadable_profile():
    doc = calibrate("smoke-test", "smoke", "cpu", 1, ["--grid", "smoke"], log=lambda _m: None)
    assert doc["format"] == FORMAT and doc["provenance"]["label"] == "measured"
    assert set(doc["pieces"]) == set(PIECES)
    for body in doc["pieces"].values():
        for coef in body["coef"].values():
            assert len(coef) == len(body["terms"]) and all(c >= 0 for c in coef)
    prof = Profile.from_doc(doc)
    assert prof.time("expert", {"tokens": 16, "hidden": 64, "inter": 64, "dtype": "float32"}) > 0
    labels = {k: v["label"] for k, v in doc["gpu"].items() if isinstance(v, dict)}
    assert labels["nvlink_bandwidth"] == "measured" and labels["nic_bandwidth"] == "estimated"


def test_real_gate_on_hidden_states_writes_a_replayable_trace(tmp_path):
    from moesim.calibrate.router_trace import main as router_trace
    from moesim.routing.sources import load_trace

    rng = np.random.default_rng(0)
    np.save(tmp_path / "gate.npy", rng.normal(size=(2, 8, 16)).astype(np.float32))
    np.save(tmp_path / "hidden.npy", rng.normal(size=(2, 64, 16)).astype(np.float32))
    router_trace(["--gate", str(tmp_path / "gate.npy"), "--hidden", str(tmp_path / "hidden.npy"), "--top-k", "2",
                  "--scoring", "sigmoid", "--n-group", "4", "--topk-group", "2", "-o", str(tmp_path / "t.npz")])
    ids, w = load_trace(tmp_path / "t.npz", 2, 8)
    assert ids.shape == (2, 64, 2) and w.shape == (2, 64, 2)
    assert all(len(set((row // 2).tolist())) <= 2 for row in ids.reshape(-1, 2))
    x = torch.from_numpy(np.load(tmp_path / "hidden.npy")[0])
    g = torch.from_numpy(np.load(tmp_path / "gate.npy")[0])
    _, ref = P.router(x, g, 2, "sigmoid", None, 4, 2)
    assert np.array_equal(np.sort(ids[0], axis=1), np.sort(ref.numpy(), axis=1))


def test_tiny_moe_forward_records_routing():
    from moesim.calibrate.tiny_moe import TinyMoE, record

    model = TinyMoE(d=32, heads=2, layers=2, inter=32, experts=8, k=2)
    text = bytes(range(256)) * 4
    ids, w, loss = record(model, text, 256)
    assert ids.shape == (2, 256, 2) and np.isfinite(loss)
    assert np.allclose(w.sum(axis=2), 1.0, atol=1e-5)


def test_cuda_path_dry_run_executes_every_gpu_piece_on_the_cpu(tmp_path):
    """`--device cuda --dry-run`: the GPU grid's code (CUDA-event timing loop with its L2 flush, BF16 and
    FP8 expert GEMMs, MLA-shaped decode, the one-GPU all-to-all skip) runs on the host; the profile says it
    is no measurement and a simulation can still load it."""
    import json

    from moesim import api
    from moesim.calibrate.run import main
    from moesim.iteration.scenario import scenario_from_dict
    out = tmp_path / "dry.json"
    assert main(["--device", "cuda", "--dry-run", "--grid", "gpu-smoke", "-o", str(out)]) == 0
    doc = json.loads(out.read_text())
    prov = doc["provenance"]
    assert prov["dry_run"] and prov["label"].startswith("dry-run") and prov["device_name"].startswith("dry run")
    assert "all_to_all" not in doc["pieces"] and "dry run" in prov["all_to_all"]
    experts = doc["pieces"]["expert"]["points"]
    assert {p["dtype"] for p in experts if "median_s" in p} == {"bfloat16", "float8_e4m3fn"}
    assert all("dry run" in p["method"] for p in experts if "median_s" in p)
    mla = [p for p in doc["pieces"]["attn_decode"]["points"] if "mla" in p]
    assert mla and all(p["kv_heads"] == 1 and p["head_dim"] == (2 * 32 + 8) / 2 for p in mla)
    assert all(v["label"] != "measured" for v in doc["gpu"].values() if isinstance(v, dict))
    assert doc["gpu"]["nvlink_bandwidth"]["source"].startswith("catalogue h100 (not measured: dry run")
    s = scenario_from_dict({"model": {"base": "mixtral-8x7b", "num_hidden_layers": 2},
                            "cluster": {"gpu": str(out), "nodes": 1, "gpus_per_node": 2},
                            "workload": {"tokens_per_gpu": 64, "scope": "moe_layers"}})
    assert api.run_scenario(s).summary.iteration_time_s > 0


def test_fp8_expert_loop_matches_bf16_within_quantisation_error():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 64, generator=g).to(torch.bfloat16)
    ref = P.experts_loop(x, [32], *P.expert_weights(1, 64, 64, torch.bfloat16)).float()
    got = P.experts_loop_fp8(x, [32], *P.expert_weights_fp8(1, 64, 64)).float()
    assert ((got - ref).norm() / ref.norm()).item() < 0.1  # e4m3 keeps ~2 significant digits


class _Evil:
    """A pickle that would run code when loaded (writes a file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_router_trace_refuses_a_pickle_that_runs_code(tmp_path, capsys):
    from moesim.calibrate.router_trace import main as router_trace
    marker = tmp_path / "ran"
    torch.save({"w": _Evil(str(marker))}, tmp_path / "evil.pt")
    np.save(tmp_path / "hidden.npy", np.zeros((4, 16), dtype=np.float32))
    rc = router_trace(["--gate", str(tmp_path / "evil.pt"), "--hidden", str(tmp_path / "hidden.npy"), "--top-k", "2",
                       "-o", str(tmp_path / "t.npz")])
    assert rc == 2 and not marker.exists() and not (tmp_path / "t.npz").exists()
    err = capsys.readouterr().err
    assert "evil.pt: not a tensor file moesim reads safely" in err and len(err.strip().splitlines()) == 1
