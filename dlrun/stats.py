"""How sure a comparison of seeds is: intervals, tests, effect sizes and the seeds a difference needs.

Everything here is a function of plain lists of numbers (one value per seed) and returns data; the
statistics are scipy.stats'. The conventions, which `dlrun compare` and the claims' verdicts print:

- An interval of a mean is Student's t interval (`method="t"`) or a percentile bootstrap
  (`method="bootstrap"`, 9,999 resamples, seeded so that a table prints the same twice). One value
  gives no interval (-inf, inf); values that are all equal give the point itself.
- A difference between two conditions is b - a, with Welch's interval (unequal variances).
- Its p-value is Welch's t-test, or a permutation test of the difference of means (exact up to 9,999
  distinct splits, else 9,999 random ones); `auto` takes the permutation test when either side has
  fewer than 5 seeds (Welch's t leans on normality that so few seeds cannot show).
- The effect size is Cohen's d (the difference over the pooled standard deviation).
- Seeds needed: the smallest number of seeds per condition at which a two-sided two-sample t-test
  at alpha = 0.05 detects an effect of this d with 80% power (noncentral t).
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 0.05
POWER = 0.80
FEW_SEEDS = 5  # below this many seeds on either side, `auto` takes the permutation test
INTERVALS = ("t", "bootstrap")
TESTS = ("auto", "welch", "permutation")
MAX_SEEDS = 10**6


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    method: str  # t, bootstrap, welch, point (no spread), none (one value), range (an infinite value)

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high

    def text(self, digits: int = 4) -> str:
        return f"[{_g(self.low, digits)}, {_g(self.high, digits)}]"


NONE = Interval(-math.inf, math.inf, "none")  # one value: nothing is known of the spread


@dataclass(frozen=True)
class Estimate:
    """A condition's values over seeds: n, mean, sample standard deviation and the interval of the mean."""

    n: int
    mean: float
    std: float
    interval: Interval

    def as_dict(self) -> dict:
        return {**asdict(self), "interval": asdict(self.interval)}


@dataclass(frozen=True)
class Difference:
    """b - a: its interval, a test's p-value, Cohen's d and the seeds per condition for 80% power."""

    delta: float
    interval: Interval
    p: float
    test: str  # welch or permutation
    d: float
    seeds_needed: float  # per condition; inf when the effect is zero

    def as_dict(self) -> dict:
        return {**asdict(self), "interval": asdict(self.interval)}


def _g(x: float, digits: int = 4) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}g}"


def _check(values: Sequence[float]) -> list[float]:
    out = [float(v) for v in values]
    if not out:
        raise ValueError("no values")
    return out


def estimate(values: Sequence[float], confidence: float = CONFIDENCE, method: str = "t") -> Estimate:
    """Mean, sample standard deviation (n - 1) and the `confidence` interval of the mean."""
    if method not in INTERVALS:
        raise ValueError(f"interval method {method!r}; choose from: {', '.join(INTERVALS)}")
    v = _check(values)
    n = len(v)
    if any(math.isnan(x) for x in v):
        return Estimate(n, math.nan, math.nan, Interval(math.nan, math.nan, "none"))
    if len(set(v)) == 1:  # exactly the value: fmean([0.8] * 3) is 0.8000000000000002, which would decide verdicts
        return Estimate(n, v[0], 0.0 if n > 1 else math.nan, Interval(v[0], v[0], "point") if n > 1 else NONE)
    try:
        math.fsum(v)
    except OverflowError:  # values near the float maximum: their sum is infinite
        v = [math.copysign(math.inf, x) if abs(x) > 1e307 else x for x in v]
    if any(math.isinf(x) for x in v):  # a diverged run's loss: the mean is infinite, the spread unknown
        mean = math.inf if max(v) == math.inf else -math.inf
        mean = mean if not (max(v) == math.inf and min(v) == -math.inf) else math.nan
        kind = "point" if len(set(v)) == 1 else "range"
        return Estimate(n, mean, math.nan if kind == "range" else 0.0, Interval(min(v), max(v), kind))
    mean = statistics.fmean(v)
    std = statistics.stdev(v)
    if std == 0:
        return Estimate(n, mean, 0.0, Interval(mean, mean, "point"))
    if method == "t":
        low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=std / math.sqrt(n))
    else:
        res = stats.bootstrap(
            (np.asarray(v),),
            np.mean,
            confidence_level=confidence,
            n_resamples=9999,
            method="percentile",
            rng=np.random.default_rng(0),
        )
        low, high = res.confidence_interval
    return Estimate(n, mean, std, Interval(float(low), float(high), method))


def welch_interval(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """The interval of mean(b) - mean(a) without assuming equal variances (Welch-Satterthwaite df).

    One value on either side gives (-inf, inf); no spread on both sides gives the point; an infinite
    value gives the interval arithmetic of the two sides' ranges.
    """
    a, b = _check(a), _check(b)
    ea, eb = estimate(a, confidence), estimate(b, confidence)
    if math.isnan(ea.mean) or math.isnan(eb.mean):
        return Interval(math.nan, math.nan, "none")
    if not (math.isfinite(ea.mean) and math.isfinite(eb.mean)):
        return _subtract(ea.interval, eb.interval, "range")
    if len(a) < 2 or len(b) < 2:
        return Interval(-math.inf, math.inf, "none")
    if ea.std == 0 and eb.std == 0:
        delta = eb.mean - ea.mean
        return Interval(delta, delta, "point")
    with warnings.catch_warnings():  # one side without spread: scipy warns of cancellation, the answer stands
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_ind(b, a, equal_var=False)
        ci = res.confidence_interval(confidence_level=confidence)
    return Interval(float(ci.low), float(ci.high), "welch")


def _subtract(a: Interval, b: Interval, method: str) -> Interval:
    """{y - x : x in a, y in b}."""
    with np.errstate(invalid="ignore"):
        low, high = b.low - a.high, b.high - a.low
    return Interval(float(low), float(high), method)


def p_value(a: Sequence[float], b: Sequence[float], test: str = "auto") -> tuple[float, str]:
    """Two-sided p-value of mean(b) != mean(a), and the test that gave it (welch or permutation)."""
    if test not in TESTS:
        raise ValueError(f"test {test!r}; choose from: {', '.join(TESTS)}")
    a, b = _check(a), _check(b)
    if test == "auto":
        test = "permutation" if min(len(a), len(b)) < FEW_SEEDS else "welch"
    if not all(math.isfinite(x) for x in a + b) or min(len(a), len(b)) < 2:
        return math.nan, test  # a test needs each side's spread
    if test == "welch":
        if statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0:  # scipy says nan; the answer is plain
            return (1.0 if statistics.fmean(a) == statistics.fmean(b) else 0.0), test
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return float(stats.ttest_ind(b, a, equal_var=False).pvalue), test
    res = stats.permutation_test(
        (np.asarray(b), np.asarray(a)),
        lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis),
        permutation_type="independent",
        vectorized=True,
        n_resamples=9999,
        alternative="two-sided",
        rng=np.random.default_rng(0),
    )
    return float(min(res.pvalue, 1.0)), test


def cohens_d(a: Sequence[float], b: Sequence[float]) -> float:
    """(mean(b) - mean(a)) / pooled standard deviation; inf for a difference without spread, nan for none."""
    a, b = _check(a), _check(b)
    if len(a) + len(b) < 3 or not all(math.isfinite(x) for x in a + b):
        return math.nan
    delta = statistics.fmean(b) - statistics.fmean(a)
    ss = sum((x - statistics.fmean(a)) ** 2 for x in a) + sum((x - statistics.fmean(b)) ** 2 for x in b)
    pooled = math.sqrt(ss / (len(a) + len(b) - 2))
    if pooled == 0:
        return 0.0 if delta == 0 else math.copysign(math.inf, delta)
    return delta / pooled


def power(d: float, n: int, alpha: float = ALPHA) -> float:
    """The power of a two-sided two-sample t-test with n seeds per condition to detect effect size d."""
    if n < 2:
        return math.nan
    df = 2 * n - 2
    crit = stats.t.ppf(1 - alpha / 2, df)
    nc = abs(d) * math.sqrt(n / 2)
    return float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))


def seeds_needed(d: float, target: float = POWER, alpha: float = ALPHA) -> float:
    """The fewest seeds per condition that detect effect size d with `target` power (inf for d = 0 or nan)."""
    if math.isnan(d):
        return math.nan  # no spread known yet: unknown, not never
    if d == 0:
        return math.inf
    if math.isinf(d) or power(d, 2, alpha) >= target:
        return 2.0
    low, high = 2, 4
    while power(d, high, alpha) < target:  # power grows with n: double, then bisect
        low, high = high, high * 2
        if high > MAX_SEEDS:
            return math.inf
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if power(d, mid, alpha) < target else (low, mid)
    return float(high)


def difference(
    a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE, test: str = "auto"
) -> Difference:
    """Everything `dlrun compare` prints for one pair of conditions (b compared with a)."""
    a, b = _check(a), _check(b)
    ea, eb = estimate(a, confidence), estimate(b, confidence)
    with np.errstate(invalid="ignore"):
        delta = float(np.float64(eb.mean) - np.float64(ea.mean))
    p, used = p_value(a, b, test)
    d = cohens_d(a, b)
    return Difference(delta, welch_interval(a, b, confidence), p, used, d, seeds_needed(d))


def seeds_to_separate(
    a: Sequence[float] | None, b: Sequence[float], margin: float, confidence: float = CONFIDENCE
) -> float:
    """The seeds per condition at which the interval of mean(b) - mean(a) (or of mean(b) alone when a is
    None), with the spread seen so far, would be narrower than `margin` on either side: inf when there is
    no difference or no spread estimate yet."""
    sides = [_check(b)] + ([_check(a)] if a is not None else [])
    if margin == 0 or not all(len(s) > 1 and all(math.isfinite(x) for x in s) for s in sides):
        return math.inf
    var = sum(statistics.variance(s) for s in sides)
    if var == 0:
        return float(max(len(s) for s in sides))

    def narrow(n: int) -> bool:
        df = n - 1 if a is None else 2 * n - 2
        return stats.t.ppf((1 + confidence) / 2, df) * math.sqrt(var / n) < abs(margin)

    low, high = 1, 2
    while not narrow(high):  # double, then bisect: the half-width falls as n grows
        low, high = high, high * 2
        if high > MAX_SEEDS:
            return math.inf
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if not narrow(mid) else (low, mid)
    return float(high)
