"""Comparisons of seeds: intervals, tests, effect sizes, seeds needed, `dlrun compare`, claims' verdicts with
intervals and settling, curves with bands and a group's margin charts."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import statistics
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import dlrun
from scipy import stats as sps

from dlrun import compare, experiments, stats
from dlrun.grouping import label, varying_keys

# ----------------------------------------------------------------------------- the statistics


def test_mean_interval_is_students_t():
    v = [0.91, 0.93, 0.92, 0.95, 0.90]
    e = stats.estimate(v)
    mean, sd = statistics.fmean(v), statistics.stdev(v)
    half = sps.t.ppf(0.975, 4) * sd / math.sqrt(5)
    assert e.mean == pytest.approx(mean) and e.std == pytest.approx(sd)
    assert (e.interval.low, e.interval.high) == pytest.approx((mean - half, mean + half))
    boot = stats.estimate(v, method="bootstrap").interval
    ref = sps.bootstrap((np.array(v),), np.mean, method="percentile", n_resamples=9999, rng=np.random.default_rng(0))
    assert (boot.low, boot.high) == pytest.approx(tuple(ref.confidence_interval))
    assert min(v) <= boot.low < mean < boot.high <= max(v)
    assert stats.estimate([0.5]).interval.low == -math.inf  # one seed: no interval
    assert stats.estimate([0.5, 0.5]).interval == stats.Interval(0.5, 0.5, "point")


def test_difference_against_scipy_and_a_hand_computation():
    a, b = [0.80, 0.82, 0.81, 0.79, 0.83, 0.80], [0.84, 0.86, 0.83, 0.85, 0.88, 0.84]
    d = stats.difference(a, b, test="welch")
    ref = sps.ttest_ind(b, a, equal_var=False)
    assert d.p == pytest.approx(ref.pvalue)
    # Welch's interval by hand: Satterthwaite's degrees of freedom
    va, vb, n = statistics.variance(a), statistics.variance(b), 6
    se = math.sqrt(va / n + vb / n)
    df = (va / n + vb / n) ** 2 / ((va / n) ** 2 / (n - 1) + (vb / n) ** 2 / (n - 1))
    delta = statistics.fmean(b) - statistics.fmean(a)
    half = sps.t.ppf(0.975, df) * se
    assert d.delta == pytest.approx(delta)
    assert (d.interval.low, d.interval.high) == pytest.approx((delta - half, delta + half))
    pooled = math.sqrt(((n - 1) * va + (n - 1) * vb) / (2 * n - 2))
    assert d.d == pytest.approx(delta / pooled)


def test_permutation_test_is_exact_for_few_seeds():
    # 3 against 3, fully separated: 2 of the C(6, 3) = 20 splits are as extreme (both signs)
    p, test = stats.p_value([0.1, 0.2, 0.15], [0.3, 0.35, 0.4])
    assert test == "permutation" and p == pytest.approx(2 / 20)
    # by enumeration for overlapping values
    a, b = [0.1, 0.3, 0.2], [0.25, 0.35, 0.4]
    pooled = a + b
    observed = abs(statistics.fmean(b) - statistics.fmean(a))
    extreme = 0
    for idx in itertools.combinations(range(6), 3):
        x = [pooled[i] for i in idx]
        y = [pooled[i] for i in range(6) if i not in idx]
        extreme += abs(statistics.fmean(x) - statistics.fmean(y)) >= observed - 1e-12
    assert stats.p_value(a, b, "permutation")[0] == pytest.approx(extreme / 20)
    assert stats.p_value([1, 2, 3, 4, 5], [2, 3, 4, 5, 6])[1] == "welch"  # 5 seeds a side: Welch's t


@pytest.mark.parametrize("d, n", [(0.2, 394), (0.5, 64), (0.8, 26)])  # Cohen (1988), table 2.4.1
def test_seeds_needed_match_cohens_table(d, n):
    assert stats.seeds_needed(d) == n
    assert stats.power(d, n) >= 0.8 > stats.power(d, n - 1)


def test_seeds_needed_edges():
    assert stats.seeds_needed(0.0) == math.inf
    assert stats.seeds_needed(math.inf) == 2
    assert stats.seeds_needed(-0.5) == 64


def test_power_against_a_simulation():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, (4000, 10)), rng.normal(0.8, 1, (4000, 10))
    simulated = float(np.mean(sps.ttest_ind(a, b, axis=1).pvalue < 0.05))
    assert simulated == pytest.approx(stats.power(0.8, 10), abs=0.03)


# ----------------------------------------------------------------------------- dlrun compare on synthetic runs


def fake_run(root: Path, name: str, lr: float, seed: int, acc: float, status="completed") -> Path:
    run = root / name
    run.mkdir(parents=True)
    config = {"optim": {"name": "sgd", "lr": lr}, "trainer": {"seed": seed, "epochs": 3}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    summary = {"status": status, "monitor": "val/acc", "metrics": {"val/acc": acc} if status == "completed" else {}}
    (run / "summary.json").write_text(json.dumps(summary))
    return run


A = [0.80, 0.82, 0.81, 0.79, 0.83]
B = [0.86, 0.88, 0.85, 0.87, 0.89]


@pytest.fixture
def two_conditions(tmp_path):
    for i, (x, y) in enumerate(zip(A, B, strict=True)):
        fake_run(tmp_path, f"a{i}", 0.1, i, x)
        fake_run(tmp_path, f"b{i}", 0.01, i, y)
    fake_run(tmp_path, "c0", 1.0, 0, 0, status="diverged")
    return tmp_path


def test_compare_groups_seeds_and_gives_the_numbers(two_conditions):
    c = compare.compare([two_conditions])
    assert [k.label for k in c.conditions] == ["optim.lr=0.01", "optim.lr=0.1"]  # best first
    best, other = c.conditions
    assert best.estimate.n == 5 and best.estimate.mean == pytest.approx(statistics.fmean(B))
    low, high = sps.t.interval(0.95, 4, loc=statistics.fmean(A), scale=statistics.stdev(A) / math.sqrt(5))
    assert (other.estimate.interval.low, other.estimate.interval.high) == pytest.approx((low, high))
    (pair,) = c.pairs
    d = pair.difference
    assert d.delta == pytest.approx(statistics.fmean(A) - statistics.fmean(B))
    assert d.test == "welch" and d.p == pytest.approx(sps.ttest_ind(A, B, equal_var=False).pvalue)
    assert d.seeds_needed == stats.seeds_needed(d.d) and d.seeds_needed <= 5
    assert pair.verdict == "b worse"
    assert c.left_out == ["optim.lr=1 (diverged)"]


def test_compare_is_inconclusive_at_two_seeds(tmp_path):
    for i in range(2):
        fake_run(tmp_path, f"a{i}", 0.1, i, [0.50, 0.56][i])
        fake_run(tmp_path, f"b{i}", 0.01, i, [0.62, 0.55][i])
    (pair,) = compare.compare([tmp_path]).pairs
    assert pair.verdict == "inconclusive at 2+2 seeds"
    assert pair.difference.interval.low < 0 < pair.difference.interval.high


def test_compare_cli_formats(two_conditions):
    r = dlrun("compare", str(two_conditions), "--format", "csv")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [row["kind"] for row in rows] == ["condition", "condition", "pair"]
    assert float(rows[2]["p"]) == pytest.approx(sps.ttest_ind(A, B, equal_var=False).pvalue)
    j = json.loads(dlrun("compare", str(two_conditions), "--format", "json", "--pairs", "all").stdout)
    assert j["pairs"][0]["verdict"] == "b worse" and j["conditions"][0]["n"] == 5
    table = dlrun("compare", str(two_conditions), "--test", "permutation")
    assert table.returncode == 0 and "(permutation)" in table.stdout and "b worse" in table.stdout
    bad = dlrun("compare", str(two_conditions), "--pairs", "some")
    assert bad.returncode == 2 and "--pairs some: unknown; choose from: best, all" in bad.stderr


def test_only_columns_that_say_something():
    params = [
        {"optim.name": "adam", "optim.lr": 1e-3, "optim.beta1": 0.9},
        {"optim.name": "sgd", "optim.lr": 1e-2, "optim.momentum": 0.0},
        {"optim.name": "adam", "optim.lr": 1e-3, "optim.beta1": 0.8},
    ]
    keys = sorted({k for p in params for k in p})
    # momentum follows optim.name (missing where it is adam); beta1 does not (two adam values)
    assert varying_keys(params, keys) == ["optim.beta1", "optim.lr", "optim.name"]
    assert label(params[1], ["optim.beta1", "optim.name"]) == "optim.beta1=-, optim.name=sgd"


# ----------------------------------------------------------------------------- claims


def claim(**kw) -> experiments.Claim:
    base = dict(
        name="c",
        statement="s",
        runtime_s=1,
        seeds=[0, 1],
        measures={"value": "value"},
        conditions={},
        expect=["a < b"],
        check="noisy_pair",
    )
    return experiments.Claim(**{**base, **kw})


NOISY_A = [0.50, 0.56, 0.52, 0.55, 0.51, 0.53, 0.54, 0.52]
NOISY_B = [0.62, 0.55, 0.63, 0.64, 0.62, 0.61, 0.63, 0.60]


@experiments.CHECKS.register("noisy_pair")
def noisy_pair(seed: int) -> dict[str, float]:
    return {"a": NOISY_A[seed], "b": NOISY_B[seed]}


def test_a_real_difference_is_inconclusive_at_2_seeds_and_holds_at_5(tmp_path):
    c = claim()
    two = experiments.run(c, seeds=[0, 1])
    (v,) = experiments.verdicts(c, two)
    assert v.status == "inconclusive" and v.text == "inconclusive at 2 seeds"
    assert experiments.overall([v]) == "inconclusive at 2 seeds"
    five = experiments.run(c, seeds=[0, 1, 2, 3, 4])
    (v,) = experiments.verdicts(c, five)
    assert v.status == "holds"
    ref = sps.ttest_ind(NOISY_A[:5], NOISY_B[:5], equal_var=False).confidence_interval()
    assert (v.interval.low, v.interval.high) == pytest.approx((ref.low, ref.high))  # a - b, Welch's
    assert "[" in v.interval_text


def test_settle_adds_seeds_until_the_verdict_is_settled():
    c = claim()
    r = experiments.run(c, seeds=[0, 1])
    added = []
    assert experiments.settle(c, r, max_seeds=8, on_more=lambda have, more: added.append(more))
    assert r.seeds == list(range(len(r.seeds))) and 2 < len(r.seeds) <= 8
    assert experiments.verdicts(c, r)[0].status == "holds"
    assert [s for more in added for s in more] == r.seeds[2:]
    r = experiments.run(c, seeds=[0, 1])
    assert not experiments.settle(c, r, max_seeds=2) and len(r.seeds) == 2  # no budget: stays inconclusive


@pytest.mark.parametrize(
    "text, a, b, status",
    [
        ("a <= 0.8", [0.70, 0.71, 0.72], [1, 1, 1], "holds"),  # interval of a - 0.8 is [-0.115, -0.065]
        ("a <= 0.8", [0.70, 0.80, 0.75], [1, 1, 1], "inconclusive"),  # [-0.174, 0.074]
        ("a <= 0.8", [0.90, 0.91, 0.92], [1, 1, 1], "does not hold"),
        ("0.8 >= a", [0.70, 0.71, 0.72], [1, 1, 1], "holds"),
        ("b >= 0.98", [0, 0, 0], [1, 1, 1], "holds"),  # no spread: the point itself
        ("a > 10 * b", [math.inf] * 3, [0.1] * 3, "holds"),  # a diverged run's loss
        ("a < b", [math.nan, 0.1, 0.1], [0.3] * 3, "does not hold"),  # a missing value never holds
    ],
)
def test_verdicts_on_the_interval(text, a, b, status):
    c = claim(check=None, conditions={"a": [], "b": []}, measures={"test/acc": "test/acc"}, expect=[text])
    r = experiments.Result(claim="c", seeds=[0, 1, 2], values={"a": {"test/acc": a}, "b": {"test/acc": b}})
    (v,) = experiments.verdicts(c, r)
    assert v.status == status


# ----------------------------------------------------------------------------- bands and margin charts


def test_band_is_the_mean_and_t_interval_per_step():
    from dlrun.bands import band

    runs = [{"val/acc": (np.array([1, 2, 3]), np.array([0.5, 0.6, 0.7]) + k / 100)} for k in range(4)]
    runs[3]["val/acc"] = (np.array([1, 3]), np.array([0.53, 0.73]))  # a run that missed step 2
    b = band(runs, "val/acc", "ci")
    assert list(b.steps) == [1, 3] and b.n == 4
    vals = [0.70, 0.71, 0.72, 0.73]
    half = sps.t.ppf(0.975, 3) * statistics.stdev(vals) / 2
    assert b.mean[1] == pytest.approx(statistics.fmean(vals))
    assert (b.low[1], b.high[1]) == pytest.approx((statistics.fmean(vals) - half, statistics.fmean(vals) + half))
    s = band(runs, "val/acc", "std")
    assert s.high[1] - s.mean[1] == pytest.approx(statistics.stdev(vals))


def test_a_group_writes_margin_charts_and_viz_curves_draws_bands(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import layout_pb2

    r = dlrun(
        "train",
        "data=xor",
        "trainer.epochs=3",
        "trainer.seeds=[0,1,2]",
        f"runs_dir={tmp_path}",
        "name=g",
        "trainer.progress=none",
    )
    assert r.returncode == 0, r.stderr
    (group,) = (tmp_path / "g").iterdir()
    ea = EventAccumulator(str(group / "bands"))
    ea.Reload()
    assert {"val/acc/mean", "val/acc/low", "val/acc/high"} <= set(ea.Tags()["scalars"])
    layout = layout_pb2.Layout()
    layout.ParseFromString(ea.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    charts = {c.title: c for cat in layout.category for c in cat.chart}
    margin = charts["val/acc"].margin.series[0]
    assert (margin.value, margin.lower, margin.upper) == ("val/acc/mean", "val/acc/low", "val/acc/high")
    from dlrun.viz.curves import read_metrics

    member = [read_metrics(group / f"seed{k}")["val/acc"][1][-1] for k in range(3)]
    assert ea.Scalars("val/acc/mean")[-1].value == pytest.approx(statistics.fmean(member), abs=1e-6)
    out = tmp_path / "curves.png"
    r = dlrun("viz", "curves", str(group), "--out", str(out))
    assert r.returncode == 0 and out.stat().st_size > 10_000, r.stderr
    bad = dlrun("viz", "curves", str(group), "--band", "wide")
    assert bad.returncode == 2 and "--band wide: unknown; choose from: ci, std, none" in bad.stderr


def test_edges_the_review_found():
    # equal values are exactly themselves: fmean([0.8] * 3) is 0.8000000000000002
    assert stats.estimate([0.8] * 3).interval == stats.Interval(0.8, 0.8, "point")
    c = claim(check=None, conditions={"a": []}, measures={"test/acc": "test/acc"}, expect=["a <= 0.8"])
    r = experiments.Result(claim="c", seeds=[0, 1, 2], values={"a": {"test/acc": [0.8] * 3}})
    assert experiments.verdicts(c, r)[0].status == "holds"
    # the seeds that separate, against a search one seed at a time
    margin, values = 0.1, [1.0, 2.0, 3.0]
    n = next(n for n in range(2, 2000) if sps.t.ppf(0.975, n - 1) * 1.0 / math.sqrt(n) < margin)
    assert stats.seeds_to_separate(None, values, margin) == n == 387
    # one seed a side: the seeds a test needs are unknown, not "never"
    assert math.isnan(stats.difference([1.0], [4.0]).seeds_needed)
    # 3 against 3 fully apart: Welch's interval leaves out 0 but the permutation test cannot pass 0.1
    d = stats.difference([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert d.interval.low > 0 and d.test == "permutation" and d.p == pytest.approx(0.1)
    assert compare._verdict(d, "maximize", 3, 3, 0.05) == "inconclusive at 3+3 seeds"


def test_a_claim_refuses_repeated_or_no_seeds_and_names_a_missing_value():
    c = claim()
    with pytest.raises(experiments.ConfigError, match="distinct seeds"):
        experiments.run(c, seeds=[0, 0, 1])
    r = experiments.run(c, seeds=[0, 1])
    bad = claim(expect=["a < typo"])
    with pytest.raises(experiments.ConfigError, match=r"no values of typo.value"):
        experiments.verdicts(bad, r)
    assert experiments.run(c, seeds=[1, 2], into=r).seeds == [0, 1, 2]  # seed 1 is not run twice
