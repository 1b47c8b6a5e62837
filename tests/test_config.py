import json

import pytest

from moesim.config import apply_overrides, catalog
from moesim.config.schema import ModelSpec
from moesim.iteration.scenario import load_scenario, scenario_from_dict
from moesim.model.moe import MoEModel
from moesim.util.errors import ScenarioError

BASE = {"model": "deepseek-v3", "cluster": {"gpu": "h800", "nodes": 4}}


def error_of(raw):
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict(raw)
    return str(info.value)


def test_catalogue_has_ten_models_that_validate():
    names = catalog.model_names()
    assert len(names) >= 10
    for name in names:
        MoEModel.from_spec(ModelSpec.model_validate(catalog.model_entry(name)))


def test_every_gpu_figure_is_labelled_with_a_source():
    for name in ("h100", "h800", "h200", "a100-80gb", "b200"):
        values, prov = catalog.split_figures(catalog.gpu_entry(name))
        numeric = [k for k, v in values.items() if k != "name"]
        assert set(numeric) == set(prov)
        assert all(p.split(":")[0] in ("datasheet", "published", "estimated") for p in prov.values())


def test_deepseek_v3_has_58_moe_layers():
    s = scenario_from_dict(BASE)
    assert MoEModel.from_spec(s.model).num_moe_layers == 58


@pytest.mark.parametrize("raw,path,words", [
    ({**BASE, "cluster": {"gpu": "h800", "nodez": 2}}, "cluster.nodez", "did you mean 'nodes'"),
    ({**BASE, "model": "deepseek-v4"}, "model", "did you mean 'deepseek-v3'"),
    ({**BASE, "cluster": {"gpu": "h800", "nodes": 3}}, "placement.redundant_experts", "redundant_experts = 8"),
    ({**BASE, "router": {"top_k": 300}}, "router.top_k", "top_k <= 256"),
    ({**BASE, "router": {"topk_group": 9}}, "router.topk_group", "topk_group <= 8"),
    ({**BASE, "router": {"stats": {"kind": "zipf", "alpa": 1}}}, "router.stats.alpa", "did you mean 'alpha'"),
    ({**BASE, "cluster": {"gpu": "h800", "intra_node": {"bandwidth": "fast"}}}, "cluster.intra_node.bandwidth",
     "cannot read 'fast'"),
    ({**BASE, "cluster": {"gpu": "h800", "nodes": "four"}}, "cluster.nodes", "integer"),
    ({**BASE, "cluster": {"gpu": "tpu9"}}, "cluster.gpu", "choose one of"),
])
def test_bad_input_names_the_field_and_the_fix(raw, path, words):
    msg = error_of(raw)
    assert f"{path}:" in msg and words in msg and "fix:" in msg and "\n" not in msg


def test_overrides_reach_any_field_and_catalogue_models():
    raw = apply_overrides(BASE, ["router.top_k=4", "cluster.nodes=8", "model.num_hidden_layers=10"])
    s = scenario_from_dict(raw)
    assert (s.router.top_k, s.cluster.nodes, s.model.num_hidden_layers, s.model.hidden_size) == (4, 8, 10, 7168)
    with pytest.raises(ScenarioError, match="KEY=VALUE"):
        apply_overrides(BASE, ["router.top_k"])


def test_hf_config_of_mixtral_and_qwen_load(tmp_path):
    mixtral = {"model_type": "mixtral", "hidden_size": 4096, "intermediate_size": 14336, "num_local_experts": 8,
               "num_experts_per_tok": 2, "num_hidden_layers": 32, "num_attention_heads": 32}
    qwen = {"model_type": "qwen2_moe", "hidden_size": 3584, "moe_intermediate_size": 2560, "num_experts": 64,
            "num_experts_per_tok": 8, "shared_expert_intermediate_size": 20480, "num_hidden_layers": 28}
    for name, cfg in (("mixtral", mixtral), ("qwen", qwen)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(cfg))
    m = scenario_from_dict({"model": {"hf_config": "mixtral/config.json"}, "cluster": {"gpu": "h100"}},
                           base_dir=tmp_path).model
    assert (m.n_routed_experts, m.moe_intermediate_size, m.num_experts_per_tok) == (8, 14336, 2)
    q = scenario_from_dict({"model": {"hf_config": "qwen/config.json"}, "cluster": {"gpu": "h100"}},
                           base_dir=tmp_path).model
    assert (q.n_routed_experts, q.n_shared_experts, q.shared_expert_intermediate_size) == (64, 1, 20480)


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ScenarioError, match="bad.yaml: line"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="no such file"):
        load_scenario(tmp_path / "missing.yaml")


def test_sm_share_must_leave_the_compute_some_sms():
    import pytest

    from moesim.iteration.scenario import scenario_from_dict
    from moesim.util.errors import ScenarioError

    raw = {"model": "mixtral-8x7b", "cluster": {"gpu": "h100", "nodes": 1, "gpus_per_node": 8}}
    assert scenario_from_dict({**raw, "comm": {"sm_share": 0.25}}).comm.sm_share == 0.25
    with pytest.raises(ScenarioError, match="comm.sm_share"):
        scenario_from_dict({**raw, "comm": {"sm_share": 1.0}})
