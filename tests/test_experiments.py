"""Claims as experiments: expectation grammar, verdicts, the convolution facts, the CLI and the report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import dlrun

from dlrun import experiments
from dlrun.errors import ConfigError


def claim(**kw) -> experiments.Claim:
    base = dict(
        name="c",
        statement="s",
        runtime_s=1,
        seeds=[0, 1],
        measures={"test/acc": "test/acc"},
        conditions={"a": [], "b": []},
        expect=[],
    )
    return experiments.Claim(**{**base, **kw})


def result(values: dict[str, list[float]], measure="test/acc") -> experiments.Result:
    return experiments.Result(claim="c", seeds=[0, 1], values={k: {measure: v} for k, v in values.items()})


@pytest.mark.parametrize(
    "text, a, b, agree",
    [
        ("a <= 0.8", [0.7, 0.8], [1, 1], True),
        ("a <= 0.8", [0.8, 0.9], [1, 1], False),
        ("a > 10 * b", [1.0, 1.2], [0.1, 0.1], True),  # 1.1 > 1.0
        ("a > 10 * b", [math.inf, math.inf], [0.1, 0.1], True),  # a diverged run
        ("a < b", [math.nan, 0.1], [0.3, 0.3], False),  # a missing value never agrees
    ],
)
def test_the_means_direction_is_kept_beside_the_verdict(text, a, b, agree):
    """Whether the means point the claim's way (the verdicts on intervals are tested in test_compare.py)."""
    c = claim(expect=[text])
    (v,) = experiments.verdicts(c, result({"a": a, "b": b}))
    assert v.means_agree is agree
    assert v.expectation == text


def test_verdict_shows_mean_and_std():
    c = claim(expect=["a < b"])
    (v,) = experiments.verdicts(c, result({"a": [0.1, 0.3], "b": [1.0, 1.0]}))
    assert "a = 0.2 ± 0.1414" in v.measured and "b = 1" in v.measured


def test_named_measures():
    c = claim(measures={"acc": "test/acc", "loss": "test/loss"}, expect=["a.loss < b.loss", "a.acc > 0.5"])
    r = experiments.Result(
        claim="c",
        seeds=[0, 1, 2],
        values={"a": {"acc": [0.9, 0.91, 0.9], "loss": [0.1] * 3}, "b": {"acc": [0.2] * 3, "loss": [2.0, 2.1, 2.0]}},
    )
    assert [v.holds for v in experiments.verdicts(c, r)] == [True, True]


def test_claim_figure_draws_each_threshold_beside_its_bar():
    """`label op number` (either way round) is a labelled dashed line at the number over the label's bar;
    a comparison of two conditions has no number to draw."""
    from matplotlib.figure import Figure

    c = claim(expect=["a >= 0.95", "0.5 > b", "a > b"])
    ax = Figure().subplots()
    experiments._thresholds(ax, c, ["a", "b"])
    lines = {tuple(map(tuple, lc.get_segments()[0])): lc.get_linestyle()[0][1] for lc in ax.collections}
    assert set(lines) == {((-0.4, 0.95), (0.4, 0.95)), ((0.6, 0.5), (1.4, 0.5))}  # over bar 0 (a) and bar 1 (b)
    assert all(dashes for dashes in lines.values())  # dashed
    assert sorted(t.get_text() for t in ax.texts) == ["< 0.5", ">= 0.95"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("a <", "cannot parse"),
        ("a < b < 1", "one comparison"),
        ("a == b", "one comparison"),
        ("aa < 1", "did you mean 'a'"),
        ("a.nope < 1", "measure 'nope'"),
        ("__import__('os') < 1", "use labels"),
    ],
)
def test_bad_expectations_are_one_line_errors(text, message):
    with pytest.raises(ConfigError, match=message) as e:
        experiments.parse_expectation(text, claim())
    assert "\n" not in str(e.value)


def test_toeplitz_matrices_are_convolutions():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 10, 9, generator=g, dtype=torch.float64)
    k = torch.randn(4, 2, 3, 2, generator=g, dtype=torch.float64)
    t = experiments.toeplitz_2d(k, (10, 9))
    assert torch.allclose(x.flatten(1) @ t.T, F.conv2d(x, k).flatten(1), atol=1e-12)
    wrong = experiments.toeplitz_2d(k.flip(-1), (10, 9))  # a correlation is not the flipped one
    assert not torch.allclose(x.flatten(1) @ wrong.T, F.conv2d(x, k).flatten(1), atol=1e-3)
    x1, k1 = x.flatten(2)[:, :, :20], k.flatten(2)
    t1 = experiments.toeplitz_1d(k1, 20)
    assert torch.allclose(x1.flatten(1) @ t1.T, F.conv1d(x1, k1).flatten(1), atol=1e-12)


def test_convolution_facts():
    facts = experiments.convolution_facts(0)
    assert facts["toeplitz_err_1d"] < 1e-12 and facts["toeplitz_err_2d"] < 1e-12
    assert facts["equivariance_err"] < 1e-12
    assert facts["conv_changed"] > 0.5  # a shift moves the feature map ...
    assert facts["pool_changed"] < 1e-12  # ... but not its global maximum


def test_every_experiment_file_loads():
    rows = experiments.listing()
    names = [r["name"] for r in rows]
    assert {"xor_hidden", "convolution", "learning_rate"} <= set(names)
    for row in rows:
        if row["claim"]:
            c = experiments.load(row["name"])
            assert c.expect and c.seeds and (c.conditions or c.check)


def test_cli_list_and_errors(tmp_path):
    out = dlrun("experiment", "list")
    assert out.returncode == 0 and "xor_hidden" in out.stdout and "Toeplitz" in out.stdout
    bad = dlrun("experiment", "run", "xor_hiden")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()]
    assert "did you mean 'xor_hidden'" in bad.stderr
    no_claim = dlrun("experiment", "run", "mnist1d_cnn")
    assert no_claim.returncode == 2 and "states no claim" in no_claim.stderr
    seeds = dlrun("experiment", "run", "convolution", "--seeds", "a,b", "--out", str(tmp_path))
    assert seeds.returncode == 2 and "--seeds" in seeds.stderr


def test_run_and_report(tmp_path):
    """A check claim end to end through the CLI: verdict table, results.json, figure, report.md."""
    out = tmp_path / "reports"
    r = dlrun("experiment", "run", "convolution", "--seeds", "0,1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "claim holds" in r.stdout
    saved = json.loads((out / "convolution" / "results.json").read_text())
    assert saved["seeds"] == [0, 1] and len(saved["values"]["conv_changed"]["value"]) == 2
    png = (out / "convolution" / "convolution.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    rep = dlrun("experiment", "report", "convolution", "--out", str(out))
    assert rep.returncode == 0, rep.stderr
    assert "reusing" not in rep.stdout  # other seeds than the claim's: run again
    text = (out / "report.md").read_text()
    assert "| [convolution](#convolution) |" in text and "**holds**" in text
    assert "![convolution](convolution/convolution.png)" in text
    again = dlrun("experiment", "report", "convolution", "--out", str(out))
    assert "reusing" in again.stdout


CLAIMS = [r["name"] for r in experiments.listing() if r["claim"]]


@pytest.mark.slow
@pytest.mark.parametrize("name", CLAIMS)
def test_claim_direction_on_a_reduced_budget(name, runs):
    """Each claim on its `quick` budget at one seed: the means point every expectation's way (one seed
    gives no interval, so the verdicts themselves are inconclusive)."""
    c = experiments.load(name)
    r = experiments.run(c, seeds=c.seeds[:1], runs_dir=runs, quick=True)
    failed = [(v.expectation, v.measured) for v in experiments.verdicts(c, r) if not v.means_agree]
    assert not failed, failed


def test_experiment_list_shows_the_wall_time_the_committed_report_measured():
    """Not the runtime typed in the YAML file: what `make reproduce` measured last (experiments/report/)."""
    from dlrun.experiments import listing

    rows = {r["name"]: r for r in listing()}
    report = Path(__file__).resolve().parent.parent / "experiments" / "report"
    measured = json.loads((report / "xor_hidden" / "results.json").read_text())["wall_time_s"]
    assert rows["xor_hidden"]["measured_s"] == measured
    assert rows["mnist1d_cnn"]["measured_s"] is None  # no claim, so no report
