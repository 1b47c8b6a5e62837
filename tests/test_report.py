"""`moesim report`: one self-contained interactive HTML page (charts drawn from embedded specs, no network),
a Markdown page with PNGs, tables with units in a reading order and the recommended row marked, several
results compared on one page, clear errors; and the page drawn in headless Chromium when it is installed."""

import html
import json
import re
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from moesim.cli.main import main
from moesim.present.html_tables import cell, header, order

SCEN = """seed: 2
model: {base: deepseek-v3, num_hidden_layers: 6}
cluster: {gpu: h800, nodes: 2, gpus_per_node: 8}
router: {stats: {kind: zipf, alpha: 1.0}}
workload: {tokens_per_gpu: 256}
"""


def specs(folder) -> list[dict]:
    page = (folder / "index.html").read_text()
    return [json.loads(html.unescape(x)) for x in re.findall(r'class="chart" data-spec="([^"]+)"', page)]


def _check_page(folder, charts):
    page = (folder / "index.html").read_text()
    got = specs(folder)
    assert len(got) == charts and all(s["kind"] in ("line", "bar", "heatmap") for s in got)
    assert not re.search(r'(src|href)=["\']?https?:', page)  # nothing fetched: opens offline
    assert "<script>" in page and "data-charts" in page and "Recommendation" in page
    md = (folder / "README.md").read_text()
    assert md.count("](figure") == charts and "Every row" in md
    for i in range(1, charts + 1):
        assert (folder / f"figure{i}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return page


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rep")
    (tmp / "s.yaml").write_text(SCEN)
    (tmp / "s2.yaml").write_text(SCEN.replace("alpha: 1.0", "alpha: 1.4"))
    r = CliRunner()
    (tmp / "s1.yaml").write_text(SCEN.replace("nodes: 2", "nodes: 1"))
    for name, scen in (("run", "s.yaml"), ("run2", "s2.yaml"), ("one", "s1.yaml")):
        assert r.invoke(main, ["run", str(tmp / scen), "-o", str(tmp / name)]).exit_code == 0
    res = r.invoke(main, ["compare", str(tmp / "s.yaml"), "--placements", "contiguous,eplb", "-o", str(tmp / "cmp")])
    assert res.exit_code == 0, res.output
    (tmp / "sw.yaml").write_text("base: s.yaml\ngrid: {cluster.nodes: [1, 2], placement.kind: [contiguous, eplb]}\n")
    assert r.invoke(main, ["sweep", str(tmp / "sw.yaml"), "-o", str(tmp / "sw"), "-j", "1"]).exit_code == 0
    return tmp


def test_reports_from_run_compare_and_sweep(results):
    r = CliRunner()
    for src, out, charts in (("run", "rep1", 3), ("cmp", "rep2", 3), ("sw", "rep3", 2)):
        res = r.invoke(main, ["report", str(results / src), "-o", str(results / out)])
        assert res.exit_code == 0, res.output
        assert "wrote" in res.stderr and not res.stdout  # results on stdout, "wrote" lines on stderr
        _check_page(results / out, charts)
    assert specs(results / "rep1")[0]["stacked"] and specs(results / "rep1")[1]["kind"] == "heatmap"
    assert specs(results / "rep1")[1]["yticks"] == specs(results / "rep1")[0]["categories"]  # layers named
    page = (results / "rep2" / "index.html").read_text()
    assert page.count("class='best'") == 1  # the recommended variant is marked
    bad = r.invoke(main, ["report", str(results), "-o", str(results / "rep4")])
    assert bad.exit_code == 2 and "result.json" in bad.output


def test_one_node_has_no_empty_network_chart(results):
    assert CliRunner().invoke(main, ["report", str(results / "one"), "-o", str(results / "rep-one")]).exit_code == 0
    page = _check_page(results / "rep-one", 2)
    assert "Inter-node" not in page and "nothing crosses the network (one node)" in page


def _best_row(folder) -> dict:
    """The row the page marks as recommended, read back from its cells."""
    page = (folder / "index.html").read_text()
    heads = [re.sub(r"<wbr>", "", h) for h in re.findall(r"<th title='([^:']+): click to sort'>", page)]
    row = re.search(r"<tr class='best'[^>]*>(.*?)</tr>", page).group(1)
    return dict(zip(heads, [html.unescape(v) for v in re.findall(r"data-v='([^']*)'", row)]))


def test_sweep_recommends_by_the_named_objective(results):
    rows = [json.loads(x) for x in (results / "sw" / "results.jsonl").read_text().splitlines()]
    per_gpu = max(rows, key=lambda r: r["tokens_per_s_per_gpu"])
    total = max(rows, key=lambda r: r["throughput_tokens_per_s"])
    fastest = min(rows, key=lambda r: r["iteration_time_s"])
    r = CliRunner()
    for objective, want, extra in (("throughput-per-gpu", per_gpu, []), ("throughput", total, []),
                                   ("latency", fastest, []), ("cost", per_gpu, ["--gpu-price", "h800=2.5"])):
        out = results / f"rep-{objective}"
        res = r.invoke(main, ["report", str(results / "sw"), "-o", str(out), "--objective", objective, *extra])
        assert res.exit_code == 0, res.output
        got = _best_row(out)
        assert float(got["throughput_tokens_per_s"]) == pytest.approx(want["throughput_tokens_per_s"])
        assert f"(objective {objective};" in (out / "index.html").read_text()  # stated on the page
    bad = r.invoke(main, ["report", str(results / "sw"), "-o", str(results / "rep-x"), "--objective", "cost"])
    assert bad.exit_code == 2 and "--gpu-price" in bad.output and not (results / "rep-x").exists()


def test_columns_equal_in_every_row_are_said_once(results):
    page = (results / "rep3" / "index.html").read_text()
    assert "The same in every row: gpu = NVIDIA H800" in page
    assert "<th title='gpu: click to sort'>" not in page


def test_several_runs_on_one_page(results):
    res = CliRunner().invoke(main, ["report", str(results / "run"), str(results / "run2"), "-o",
                                    str(results / "both"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["wrote"][0].endswith("index.html")
    page = _check_page(results / "both", 2)
    bars = specs(results / "both")[0]
    assert bars["categories"] == ["run", "run2"] and len(bars["series"][0]["y"]) == 2
    assert "2 results compared" in page and page.count("class='best'") == 1


def test_table_columns_units_and_order():
    cols = order(["zeta", "iteration_time_s", "error", "placement", "cluster.nodes", "throughput_tokens_per_s"])
    assert cols == ["placement", "cluster.nodes", "throughput_tokens_per_s", "iteration_time_s", "zeta", "error"]
    assert header("iteration_time_s") == "iteration_time (ms)" and header("inter_node_bytes") == "inter_node (GB)"
    assert cell("inter_node_bytes", 1.3189e11, {})[0] == "131.9"  # GB, not 1.3189e+11
    assert cell("throughput_tokens_per_s", 722646.2, {})[0] == "722,646"
    assert cell("gpus", 0, {"feasible": False})[0] == "–"  # an infeasible row shows no GPU count
    assert cell("ttft_slo_s", float("nan"), {})[0] == "–"


@pytest.mark.slow  # a headless browser draws each page: seconds; CI runs it
@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                    reason="headless Chromium not installed (Debian: apt-get install chromium)")
def test_pages_draw_in_headless_chromium(results):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    probe = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                            "--dump-dom", "about:blank"], capture_output=True, text=True, timeout=120)
    if probe.returncode != 0 or "<html" not in probe.stdout:  # a Chromium that crashes is not a report's fault
        pytest.skip(f"the installed Chromium does not start (exit {probe.returncode}: "
                    f"{(probe.stderr.strip().splitlines() or ['no output'])[-1][:120]})")
    CliRunner().invoke(main, ["report", str(results / "run"), "-o", str(results / "rep5")])
    out = subprocess.run(["bash", "reports/check_html.sh", str(results / "rep5" / "index.html")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "3/3 charts drawn" in out.stdout, out.stdout + out.stderr
    assert (results / "rep5" / "screenshot.png").stat().st_size > 10_000
    CliRunner().invoke(main, ["report", str(results / "sw"), "-o", str(results / "rep3")])
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--virtual-time-budget=8000", "--dump-dom", (results / "rep3" / "index.html").as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    xticks = re.findall(r'<text[^>]*text-anchor="middle" class="tick"[^>]*>([^<]*)</text>', dom)
    assert xticks and all(re.fullmatch(r"\d+", t) for t in xticks), xticks  # node counts: no tick at 1.5
