"""Engines' files in and out, with fixtures shaped exactly as the engines write them (read from their code;
docs/sources.md): SGLang's expert-distribution dumps in stat, per_pass and per_token modes, vLLM's EPLB
state, and SGLang's --init-expert-location reader for `moesim export-placement`."""

import inspect
import json

import numpy as np
import pytest
from click.testing import CliRunner

from moesim import api
from moesim.cli.main import main
from moesim.routing.sources import SourceError, load_histogram, load_trace

torch = pytest.importorskip("torch", reason="the engines' dumps are torch files; CI installs torch")

HIDDEN, DENSE, E, EP, REDUNDANT = 6, 3, 256, 16, 32  # DeepSeek-V3 cut to 6 layers: 3 dense, 3 MoE
P = E + REDUNDANT


def scenario(tmp_path, stats: dict) -> api.Scenario:
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps({"seed": 1, "model": {"base": "deepseek-v3", "num_hidden_layers": HIDDEN},
                                "cluster": {"gpu": "h800", "nodes": 2, "gpus_per_node": 8},
                                "router": {"stats": stats}, "workload": {"tokens_per_gpu": 64}}))
    return path


def p2l_map(layers: int, rng) -> np.ndarray:
    """A physical-to-logical map as EPLB leaves it: every logical expert once, then 32 redundant ones."""
    return np.stack([np.concatenate([rng.permutation(E), rng.integers(0, E, REDUNDANT)]) for _ in range(layers)])


def physical(row: np.ndarray, logical: np.ndarray, rng) -> np.ndarray:
    """A physical replica of each chosen logical expert (SGLang routes logically, then picks a replica)."""
    return np.array([rng.choice(np.flatnonzero(row == e)) for e in logical])


def sglang_stat_dump(path, counts: np.ndarray, buffer: int) -> None:
    """_StatAccumulator.dump: logical_count [buffer, num_hidden_layers, E] int32, dense rows zero, buffer
    slots not yet written zero; rank; average_utilization_rate_over_window (None unless metrics are on)."""
    buf = np.zeros((buffer, HIDDEN, E), dtype=np.int32)
    buf[: counts.shape[0], DENSE:] = counts
    torch.save({"rank": 0, "logical_count": torch.from_numpy(buf), "average_utilization_rate_over_window": None},
               path)


def sglang_detail_dump(path, passes: list[np.ndarray], p2l: np.ndarray, topk: list[np.ndarray] | None) -> None:
    """_DetailAccumulator.dump: records (forward_pass_id, rank, gatherer_key, global_physical_count
    [num_hidden_layers, P]; per_token adds the batch metadata and topk_ids_of_layer [num_hidden_layers,
    tokens, 8] physical ids, -1 unused) and last_physical_to_logical_map [num_hidden_layers, P]."""
    full_map = np.concatenate([np.tile(np.arange(P) % E, (DENSE, 1)), p2l])
    records = []
    for i, count in enumerate(passes):
        gpc = np.zeros((HIDDEN, P), dtype=np.int32)
        gpc[DENSE:] = count
        rec = {"forward_pass_id": i, "rank": 0, "gatherer_key": "primary",
               "global_physical_count": torch.from_numpy(gpc)}
        if topk is not None:
            ids = np.full((HIDDEN, topk[i].shape[1], 8), -1, dtype=np.int32)
            ids[DENSE:, :, : topk[i].shape[2]] = topk[i]
            n = ids.shape[1]
            rec.update(input_ids=list(range(n)), positions=list(range(n)), extend_seq_lens=[n], forward_mode=1,
                       topk_ids_of_layer=torch.from_numpy(ids), misc_objects=[])
        records.append(rec)
    torch.save({"records": records, "last_physical_to_logical_map": torch.from_numpy(full_map)}, path)


def vllm_eplb_state(path, window: np.ndarray, p2l: np.ndarray, filled: int) -> None:
    """The tensors of vLLM's EplbModelState: expert_load_window [window, MoE layers, P] int32 (a ring
    buffer: unwritten slots zero), expert_load_pass, physical_to_logical_map [MoE layers, P],
    logical_to_physical_map [MoE layers, E, 1024] (-1 padded), logical_replica_count [MoE layers, E]."""
    win = np.zeros_like(window, dtype=np.int32)
    win[:filled] = window[:filled]
    l2p = np.full((p2l.shape[0], E, 1024), -1, dtype=np.int64)
    cnt = np.zeros((p2l.shape[0], E), dtype=np.int64)
    for layer, row in enumerate(p2l):
        for j, e in enumerate(row):
            if e < 0:  # a slot with no expert (elastic EP)
                continue
            l2p[layer, e, cnt[layer, e]] = j
            cnt[layer, e] += 1
    torch.save({"physical_to_logical_map": torch.from_numpy(p2l), "logical_to_physical_map": torch.from_numpy(l2p),
                "logical_replica_count": torch.from_numpy(cnt), "expert_load_pass": torch.from_numpy(win[0]),
                "expert_load_window": torch.from_numpy(win)}, path)


def test_sglang_stat_dump_with_dense_rows_and_an_unfilled_buffer(tmp_path):
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 50, (3, HIDDEN - DENSE, E))
    sglang_stat_dump(tmp_path / "d.pt", counts, buffer=8)
    got = load_histogram(tmp_path / "d.pt", None, "mean", HIDDEN - DENSE, E)
    assert np.allclose(got, counts.mean(axis=0))  # the 5 empty buffer slots do not dilute the mean
    assert np.allclose(load_histogram(tmp_path / "d.pt", None, 2, HIDDEN - DENSE, E), counts[2])
    r = api.run(scenario(tmp_path, {"kind": "histogram", "path": str(tmp_path / "d.pt")}))
    assert r.summary.iteration_time_s > 0


def test_sglang_per_pass_dump_folds_physical_counts_with_its_map(tmp_path):
    rng = np.random.default_rng(1)
    p2l = p2l_map(HIDDEN - DENSE, rng)
    passes = [rng.integers(0, 9, (HIDDEN - DENSE, P)) for _ in range(4)]
    sglang_detail_dump(tmp_path / "d.pt", passes, p2l, None)
    got = load_histogram(tmp_path / "d.pt", None, 1, HIDDEN - DENSE, E)
    want = np.stack([np.bincount(p2l[i], weights=passes[1][i], minlength=E) for i in range(HIDDEN - DENSE)])
    assert np.allclose(got, want)


def test_sglang_per_token_dump_is_a_trace_of_logical_ids(tmp_path):
    rng = np.random.default_rng(2)
    p2l = p2l_map(HIDDEN - DENSE, rng)
    k, tokens = 8, [5, 7]
    topk = [np.stack([np.stack([physical(p2l[layer], rng.choice(E, k, replace=False), rng) for _ in range(n)])
                      for layer in range(3)]) for n in tokens]
    passes = [np.stack([np.bincount(layer.ravel(), minlength=P) for layer in t]) for t in topk]
    sglang_detail_dump(tmp_path / "d.pt", passes, p2l, topk)
    ids, _ = load_trace(tmp_path / "d.pt", HIDDEN - DENSE, E)
    assert ids.shape == (3, sum(tokens), k)
    assert np.array_equal(ids[1, :5], p2l[1][topk[0][1]])  # layer 1, the first pass's 5 tokens
    s = scenario(tmp_path, {"kind": "trace", "path": str(tmp_path / "d.pt")})
    assert api.run(s).summary.iteration_time_s > 0


def test_top_k_below_sglangs_eight_slots_drops_the_unused_columns(tmp_path):
    rng = np.random.default_rng(3)
    p2l = p2l_map(HIDDEN - DENSE, rng)
    topk = [np.stack([np.stack([physical(p2l[layer], rng.choice(E, 6, replace=False), rng) for _ in range(4)])
                      for layer in range(3)])]
    sglang_detail_dump(tmp_path / "d.pt", [np.ones((3, P), int)], p2l, topk)
    assert load_trace(tmp_path / "d.pt", HIDDEN - DENSE, E)[0].shape == (3, 4, 6)


def test_vllm_eplb_state_uses_the_filled_part_of_its_window(tmp_path):
    rng = np.random.default_rng(4)
    p2l = p2l_map(HIDDEN - DENSE, rng)
    window = rng.integers(1, 20, (10, HIDDEN - DENSE, P))
    vllm_eplb_state(tmp_path / "state.pt", window, p2l, filled=6)
    got = load_histogram(tmp_path / "state.pt", None, "mean", HIDDEN - DENSE, E)
    want = np.stack([np.bincount(p2l[i], weights=window[:6, i].mean(axis=0), minlength=E) for i in range(3)])
    assert np.allclose(got, want)
    with pytest.raises(SourceError, match="step 6 out of range: the file has 6 steps"):
        load_histogram(tmp_path / "state.pt", None, 6, HIDDEN - DENSE, E)


def test_vllm_elastic_ep_slots_marked_minus_one_are_left_out(tmp_path):
    """vLLM's elastic EP scale-up fills the new physical slots' map entries with -1 and zeroes their loads
    (eplb_state.py); such a state folds over the mapped slots only. Loads on a -1 slot are refused."""
    rng = np.random.default_rng(5)
    p2l = p2l_map(HIDDEN - DENSE, rng)
    p2l[:, -REDUNDANT:] = -1
    window = rng.integers(1, 20, (4, HIDDEN - DENSE, P))
    window[:, :, -REDUNDANT:] = 0
    vllm_eplb_state(tmp_path / "state.pt", window, p2l, filled=4)
    got = load_histogram(tmp_path / "state.pt", None, "mean", HIDDEN - DENSE, E)
    mapped = p2l[:, :-REDUNDANT]
    want = np.stack([np.bincount(mapped[i], weights=window[:, i, :-REDUNDANT].mean(axis=0), minlength=E)
                     for i in range(3)])
    assert np.allclose(got, want)
    window[:, 1, -1] = 7
    vllm_eplb_state(tmp_path / "bad.pt", window, p2l, filled=4)
    with pytest.raises(SourceError, match="marked -1 .* carry loads"):
        load_histogram(tmp_path / "bad.pt", None, "mean", HIDDEN - DENSE, E)


def test_a_dump_for_another_model_is_refused_naming_the_layers(tmp_path):
    sglang_stat_dump(tmp_path / "d.pt", np.ones((1, HIDDEN - DENSE, E), int), buffer=1)
    with pytest.raises(SourceError, match="6 layers in the file \\(3 with counts\\), the model has 5 MoE layers"):
        load_histogram(tmp_path / "d.pt", None, "mean", 5, E)


def test_moesim_stats_reads_each_dump_by_its_kind(tmp_path):
    rng = np.random.default_rng(5)
    p2l = p2l_map(HIDDEN - DENSE, rng)
    vllm_eplb_state(tmp_path / "state.pt", rng.integers(1, 20, (4, 3, P)), p2l, filled=4)
    sglang_stat_dump(tmp_path / "stat.pt", rng.integers(1, 20, (2, 3, E)), buffer=4)
    for name in ("state.pt", "stat.pt"):
        r = CliRunner().invoke(main, ["stats", str(tmp_path / name), "--gpus", "16", "--json"])
        assert r.exit_code == 0, r.output
        doc = json.loads(r.stdout)
        assert doc["kind"] == "histogram" and doc["experts"] == E and doc["layers_count"] == 3


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    torch.save({"logical_count": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(SourceError, match="not a readable torch file of tensors"):
        load_histogram(tmp_path / "evil.pt", None, "mean", 3, E)


def test_export_placement_is_exactly_what_sglangs_reader_accepts(tmp_path):
    path = scenario(tmp_path, {"kind": "zipf", "alpha": 1.2})
    out = tmp_path / "plan.json"
    r = CliRunner().invoke(main, ["export-placement", str(path), "--set", "placement.kind=eplb",
                                  "--set", f"placement.redundant_experts={REDUNDANT}", "-o", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())

    def init_by_mapping(server_args, model_config, physical_to_logical_map):  # SGLang's signature
        return physical_to_logical_map

    rows = init_by_mapping(None, None, **doc)  # SGLang calls it with **data_dict: no other key may be there
    assert list(inspect.signature(init_by_mapping).parameters)[2:] == list(doc)
    assert len(rows) == HIDDEN and all(len(row) == P for row in rows)  # num_layers x (E + redundant)
    assert P % EP == 0
    assert rows[0] == [j % E for j in range(P)]  # dense layers: SGLang's trivial mapping
    assert all(sorted(set(row)) == list(range(E)) for row in rows[DENSE:])
    notes = json.loads((tmp_path / "plan.moesim.json").read_text())
    assert notes["sglang_flags"] == f"--ep-size {EP} --ep-num-redundant-experts {REDUNDANT}"
    assert "wrote" in r.stderr and "wrote" not in r.stdout


def test_a_bare_integer_cube_must_say_what_it_is(tmp_path):
    ids = np.stack([np.stack([np.random.default_rng(i).choice(16, 2, replace=False) for i in range(50)])] * 2)
    np.save(tmp_path / "t.npy", ids)
    r = CliRunner().invoke(main, ["stats", str(tmp_path / "t.npy"), "--gpus", "4"])
    assert r.exit_code == 2 and "--kind trace or --kind histogram" in r.output
    r = CliRunner().invoke(main, ["stats", str(tmp_path / "t.npy"), "--gpus", "4", "--kind", "trace", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["kind"] == "trace"


def sglang_rank_dumps(folder, passes: list[np.ndarray], p2l: np.ndarray) -> list:
    """_DetailAccumulator.dump on every rank of an EP16 DeepEP low-latency run: each rank's
    expert_distribution_recorder_{time}_{rank}.pt holds its own physical slice of global_physical_count
    (_convert_local_to_global_physical_count: columns local·rank .. local·(rank+1), zeros elsewhere)."""
    local = P // EP
    full_map = torch.from_numpy(np.concatenate([np.tile(np.arange(P) % E, (DENSE, 1)), p2l]))
    paths = []
    for rank in range(EP):
        records = []
        for i, count in enumerate(passes):
            gpc = np.zeros((HIDDEN, P), dtype=np.int32)
            gpc[DENSE:, local * rank: local * (rank + 1)] = count[:, local * rank: local * (rank + 1)]
            records.append({"forward_pass_id": i, "rank": rank, "gatherer_key": "primary",
                            "global_physical_count": torch.from_numpy(gpc)})
        path = folder / f"expert_distribution_recorder_1750000000.5_{rank}.pt"
        torch.save({"records": records, "last_physical_to_logical_map": full_map}, path)
        paths.append(path)
    return paths


def test_per_rank_dump_files_merge_to_the_global_counts(tmp_path):
    rng = np.random.default_rng(7)
    p2l = p2l_map(HIDDEN - DENSE, rng)
    passes = [rng.integers(0, 9, (HIDDEN - DENSE, P)) for _ in range(3)]
    paths = sglang_rank_dumps(tmp_path, passes, p2l)
    sglang_detail_dump(tmp_path / "whole.pt", passes, p2l, None)  # what one global recorder would hold
    for step in (0, 2, "mean"):
        merged = load_histogram([str(p) for p in paths], None, step, HIDDEN - DENSE, E)
        assert np.allclose(merged, load_histogram(tmp_path / "whole.pt", None, step, HIDDEN - DENSE, E))
    # a glob in the scenario names every rank's file (sorted, made absolute by the loader)
    s = api.load_scenario(scenario(tmp_path, {"kind": "histogram", "path": "expert_distribution_recorder_*.pt"}))
    assert sorted(s.router.stats.path) == sorted(str(p.resolve()) for p in paths)
    r = api.run(scenario(tmp_path, {"kind": "histogram", "path": [p.name for p in paths]}))
    assert r.summary.iteration_time_s > 0


def test_one_ranks_file_alone_is_refused_naming_the_fix(tmp_path):
    rng = np.random.default_rng(8)
    p2l = p2l_map(HIDDEN - DENSE, rng)
    passes = [rng.integers(1, 9, (HIDDEN - DENSE, P)) for _ in range(2)]
    paths = sglang_rank_dumps(tmp_path, passes, p2l)
    with pytest.raises(SourceError, match=r"rank 3's file of a per-rank dump counts only its own experts"):
        load_histogram(paths[3], None, "mean", HIDDEN - DENSE, E)
    r = CliRunner().invoke(main, ["stats", str(paths[0]), "--gpus", "16"])
    assert r.exit_code == 2 and "give every rank's file" in r.output
    whole = tmp_path / "whole.pt"
    sglang_detail_dump(whole, passes, p2l, None)
    merged = CliRunner().invoke(main, ["stats", *map(str, paths), "--gpus", "16", "--json"])
    single = CliRunner().invoke(main, ["stats", str(whole), "--gpus", "16", "--json"])
    assert merged.exit_code == 0, merged.output
    got, want = json.loads(merged.output), json.loads(single.output)
    assert got["layers"] and got["layers"] == want["layers"]
