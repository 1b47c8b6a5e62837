"""Ranking rows by the objective the user names: per GPU by default (the biggest cluster always has the most
tokens/s), total throughput, cost per million tokens at given GPU prices, latency; prices parsed or refused."""

import pytest

from moesim.studies.objective import OBJECTIVES, best, check, parse_prices, price_of, recommend_line
from moesim.util.errors import MoesimError

# the case: 8 nodes at 4.45k tokens/s/GPU against 2 nodes at 10.7k (8 GPUs per node)
ROWS = [{"cluster.nodes": 8, "gpus": 64, "gpu": "NVIDIA H800 SXM5 80GB", "throughput_tokens_per_s": 64 * 4450.0,
         "tokens_per_s_per_gpu": 4450.0, "iteration_time_s": 0.050},
        {"cluster.nodes": 2, "gpus": 16, "gpu": "NVIDIA H800 SXM5 80GB", "throughput_tokens_per_s": 16 * 10700.0,
         "tokens_per_s_per_gpu": 10700.0, "iteration_time_s": 0.080},
        {"cluster.nodes": 4, "error": "does not fit"}]


def test_default_is_per_gpu_not_the_biggest_cluster():
    assert best(ROWS) == 1
    assert best(ROWS, "throughput") == 0
    assert best(ROWS, "latency") == 0  # the shorter iteration
    assert best([ROWS[2]]) is None  # a failed row is never recommended


def test_per_gpu_falls_back_to_throughput_over_gpus():
    rows = [{"throughput_tokens_per_s": 800.0, "gpus": 8}, {"throughput_tokens_per_s": 1000.0, "gpus": 16}]
    assert best(rows) == 0


def test_cost_uses_each_gpus_price():
    rows = [{**ROWS[0], "cluster.gpu": "h100", "gpu": "NVIDIA H100 SXM5 80GB"},
            {**ROWS[1], "cluster.gpu": "h200", "gpu": "NVIDIA H200 SXM 141GB"}]
    # USD/Mtok = price / (tokens/s/GPU * 3600) * 1e6: 1.0 / 4450 vs 10.0 / 10700 per GPU-second
    assert best(rows, "cost", {"h100": 1.0, "h200": 10.0}) == 0
    assert best(rows, "cost", {"h100": 3.0, "h200": 3.0}) == 1
    assert OBJECTIVES.get("cost").value(rows[0], 2.0) == pytest.approx(2.0 / (4450 * 3600) * 1e6)
    assert price_of({"gpu": "NVIDIA H800 SXM5 80GB"}, {"h800": 2.1}) == 2.1  # a key may be part of the name
    with pytest.raises(MoesimError, match="no price for the GPU 'NVIDIA H800"):
        price_of({"gpu": "NVIDIA H800 SXM5 80GB"}, {"h100": 2.1})


def test_prices_are_parsed_or_refused_with_the_fix():
    assert parse_prices("2.5") == 2.5 and parse_prices(None) is None
    assert parse_prices("h800=2.1, h100=2.5") == {"h800": 2.1, "h100": 2.5}
    for bad in ("abc", "h800=", "-1", "0", "inf", "h800=nan"):
        with pytest.raises(MoesimError, match="USD per GPU-hour"):
            parse_prices(bad)
    with pytest.raises(MoesimError, match="--gpu-price"):
        check("cost", None)  # before any work
    assert check("throughput", None) is None
    with pytest.raises(MoesimError, match="unknown objective"):
        best(ROWS, "fastest")


def test_recommendation_states_the_objective_and_its_figure():
    line = recommend_line(ROWS[1], "throughput-per-gpu", None, "2 nodes")
    assert "objective throughput-per-gpu" in line and "10,700 tokens/s/GPU" in line
    assert "80 ms" in recommend_line(ROWS[1], "latency", None, "2 nodes")
