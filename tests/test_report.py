"""`moesim report` from a run, a compare and a sweep: self-contained HTML, Markdown, figures, clear errors."""

import base64
import re

from click.testing import CliRunner

from moesim.cli import main

SCEN = """seed: 2
model: {base: deepseek-v3, num_hidden_layers: 6}
cluster: {gpu: h800, nodes: 2, gpus_per_node: 8}
router: {stats: {kind: zipf, alpha: 1.0}}
workload: {tokens_per_gpu: 256}
"""


def _check_page(folder, figures):
    page = (folder / "index.html").read_text()
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(imgs) == figures
    assert all(base64.b64decode(x)[:8] == b"\x89PNG\r\n\x1a\n" for x in imgs)  # embedded, offline
    assert "data-figures" in page and "Recommendation" in page
    md = (folder / "README.md").read_text()
    assert md.count("](figure") == figures and "Every row" in md
    for i in range(1, figures + 1):
        assert (folder / f"figure{i}.png").stat().st_size > 1000


def test_reports_from_run_compare_and_sweep(tmp_path):
    (tmp_path / "s.yaml").write_text(SCEN)
    r = CliRunner()
    assert r.invoke(main, ["run", str(tmp_path / "s.yaml"), "-o", str(tmp_path / "run")]).exit_code == 0
    assert r.invoke(main, ["report", str(tmp_path / "run"), "-o", str(tmp_path / "rep1")]).exit_code == 0
    _check_page(tmp_path / "rep1", 3)  # time split, GPU x layer heatmap, inter-node bytes
    res = r.invoke(main, ["compare", str(tmp_path / "s.yaml"), "--placements", "contiguous,eplb",
                          "-o", str(tmp_path / "cmp")])
    assert res.exit_code == 0, res.output
    assert r.invoke(main, ["report", str(tmp_path / "cmp"), "-o", str(tmp_path / "rep2")]).exit_code == 0
    _check_page(tmp_path / "rep2", 1)
    (tmp_path / "sw.yaml").write_text("base: s.yaml\n"
                                      "grid: {cluster.nodes: [1, 2], placement.kind: [contiguous, eplb]}\n")
    assert r.invoke(main, ["sweep", str(tmp_path / "sw.yaml"), "-o", str(tmp_path / "sw"), "-j", "1"]).exit_code == 0
    assert r.invoke(main, ["report", str(tmp_path / "sw"), "-o", str(tmp_path / "rep3")]).exit_code == 0
    _check_page(tmp_path / "rep3", 1)
    bad = r.invoke(main, ["report", str(tmp_path), "-o", str(tmp_path / "rep4")])
    assert bad.exit_code == 2 and "result.json" in bad.output
