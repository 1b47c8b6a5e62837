"""The Hugging Face importer on a corpus of real MoE configs (tests/fixtures/hf-configs/corpus.yaml): each
imports with its layer pattern, routing function, shared experts and weight format, and its parameter
counts match the published figures (within 1%, or rounding to the figure at its stated precision), under
the publisher's active-parameter convention; what moesim cannot represent is refused naming the key."""

import json
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from moesim.config.hf import from_hf_config
from moesim.config.schema import ModelSpec
from moesim.iteration.scenario import scenario_from_dict
from moesim.model.memory import param_counts
from moesim.model.moe import MoEModel
from moesim.util.errors import ScenarioError

CORPUS = Path(__file__).parent / "fixtures" / "hf-configs"
DOC = yaml.safe_load((CORPUS / "corpus.yaml").read_text())
SCALE = {"B": Decimal(10) ** 9, "T": Decimal(10) ** 12}


def load(name: str):
    return scenario_from_dict({"model": {"hf_config": f"{name}/config.json"}, "cluster": {"gpu": "h100"}},
                              base_dir=CORPUS).model


def matches(count: float, published: str, rel: float = 0.01) -> bool:
    """Within ``rel`` of the figure, or within half a unit of its last digit ("37B": 36.5B to 37.5B)."""
    value = Decimal(published[:-1])
    unit = Decimal(1).scaleb(value.as_tuple().exponent) * SCALE[published[-1]]
    want = float(value * SCALE[published[-1]])
    return abs(count - want) <= max(rel * want, float(unit) / 2)


def test_the_corpus_is_big_enough():
    assert len(DOC["imports"]) >= 25
    assert all((CORPUS / name / "config.json").is_file() for name in [*DOC["imports"], *(DOC["refused"] or {})])


@pytest.mark.parametrize("name", sorted(DOC["imports"]))
def test_each_config_imports_with_its_shape(name):
    want, m = DOC["imports"][name]["expect"], load(name)
    moe = MoEModel.from_spec(m)
    assert m.num_hidden_layers == want["layers"]
    assert moe.num_moe_layers == want["moe_layers"] and moe.moe_layer_ids[0] == want["first_moe_layer"]
    assert m.scoring_func == want["scoring_func"]
    assert m.n_shared_experts == want["shared_experts"] and (moe.shared_inter > 0) == (want["shared_experts"] > 0)
    assert (m.n_routed_experts, m.num_experts_per_tok, m.weight_dtype) == (want["experts"], want["top_k"],
                                                                          want["weight_dtype"])


PUBLISHED = sorted(n for n, e in DOC["imports"].items() if e["published"] is not None)
UNPUBLISHED = sorted(n for n, e in DOC["imports"].items() if e["published"] is None)


@pytest.mark.parametrize("name", UNPUBLISHED)
def test_a_config_without_published_figures_keeps_its_recorded_count(name):
    """No publisher's figure to check against: the count recorded in the corpus (with its assumptions) is
    pinned, so a change to the importer or the parameter model shows here."""
    counted, p = DOC["imports"][name]["counted"], param_counts(load(name))
    assert matches(p.total, counted["total"], 1e-4) and matches(p.active, counted["active"], 1e-4)


@pytest.mark.parametrize("name", PUBLISHED)
def test_each_config_counts_the_published_parameters(name):
    pub, p = DOC["imports"][name]["published"], param_counts(load(name))
    active = {"with_embeddings": p.active_with_embedding, "without_input_embedding": p.active,
              "non_embedding": p.active - (p.embeddings - p.input_embedding)}[pub["convention"]]
    assert matches(p.total, pub["total"], pub.get("total_rel", 0.01)), (p.total, pub)
    assert matches(active, pub["active"], pub.get("active_rel", 0.01)), (active, pub)


@pytest.mark.parametrize("name", sorted(DOC["refused"] or {}))
def test_what_cannot_be_represented_is_refused_naming_the_key(name):
    key = DOC["refused"][name]["refuse"]
    with pytest.raises(ScenarioError, match=f"{key}: ") as err:
        load(name)
    assert "model.hf_config" in str(err.value)


def test_the_rounding_rule():
    assert matches(36.62e9, "37B") and not matches(36.4e9, "37B")
    assert matches(116.79e9, "116.83B") and not matches(110e9, "116.83B")
    assert matches(1026e9, "1T")


# configs of families with no file in the corpus, shaped as their model cards' config.json (hand-written)
DBRX = {"model_type": "dbrx", "d_model": 6144, "n_heads": 48, "n_layers": 40, "vocab_size": 100352,
        "attn_config": {"kv_n_heads": 8}, "ffn_config": {"ffn_hidden_size": 10752, "moe_num_experts": 16,
                                                         "moe_top_k": 4}}
ERNIE = {"model_type": "ernie4_5_moe", "hidden_size": 2560, "num_hidden_layers": 28, "moe_num_experts": 64,
         "moe_k": 6, "moe_intermediate_size": 1536, "moe_layer_start_index": 1, "moe_layer_interval": 1,
         "moe_num_shared_experts": 2, "num_attention_heads": 20, "num_key_value_heads": 4, "vocab_size": 103424}


def test_dbrx_and_ernie_layouts_are_read():
    dbrx = ModelSpec(**from_hf_config(DBRX, "dbrx"))
    assert (dbrx.n_routed_experts, dbrx.num_experts_per_tok, dbrx.moe_intermediate_size) == (16, 4, 10752)
    assert matches(param_counts(dbrx).total, "132B")  # Databricks DBRX announcement: 132B total
    ernie = ModelSpec(**from_hf_config(ERNIE, "ernie"))
    assert (ernie.n_routed_experts, ernie.num_experts_per_tok, ernie.n_shared_experts) == (64, 6, 2)
    assert MoEModel.from_spec(ernie).moe_layer_ids[0] == 1


@pytest.mark.parametrize("cfg, key", [
    ({**ERNIE, "moe_num_experts": [64, 32]}, "n_routed_experts differs between layers"),
    ({**ERNIE, "attn_layer_period": 8, "expert_layer_period": 2}, "attn_layer_period: "),
    ({**ERNIE, "scoring_func": "sparsemax"}, "scoring_func: 'sparsemax'"),
    ({"model_type": "llama"}, "names no routed experts"),
])
def test_other_refusals_name_the_key(cfg, key):
    with pytest.raises(ValueError, match=key):
        from_hf_config(cfg, "x")


def test_qwen_dense_layers_and_a_quant_sidecar(tmp_path):
    cfg = json.loads((CORPUS / "Qwen--Qwen3-30B-A3B" / "config.json").read_text())
    m = ModelSpec(**from_hf_config({**cfg, "mlp_only_layers": [0, 47]}, "q",
                                   {"quantization": {"quant_algo": "NVFP4"}}))
    assert MoEModel.from_spec(m).num_moe_layers == 46 and m.weight_dtype == "nvfp4"
