"""Centered finite differences, relative errors and the verdicts they earn.

    numeric derivative   n = (f(theta + h e_i) - f(theta - h e_i)) / 2h
    relative error       |a - n| / max(|a|, |n|, floor)

Verdicts (CS231n's thresholds, see the "Gradient checking" section of the README):
    good <= 1e-7 < acceptable < 1e-4 <= suspicious <= 1e-2 < wrong
A centered difference in float64 with a small step (h <= STRICT_STEP) is accurate to far better
than 1e-4 (rounding about 1e-10, truncation about h^2 |f'''| / 6), so an error of 1e-4 or more there
belongs to the gradient, and such a coordinate is judged strictly:
    good <= 1e-7 < acceptable < 1e-4 <= wrong
The "suspicious" band is kept for what rounding or a kink can explain: one-sided differences next
to a kink (error O(h)) and objectives computed in float32 or lower.

The floor: rounding makes f(theta +- h e_i) uncertain by a few ulps of f, so n is uncertain by
about NOISE_ULPS * eps * |f| / h (about 2e-9 for a loss near 2 and h = 1e-6 in float64). A
gradient smaller than floor = that noise / resolution cannot be measured to the resolution by any
finite difference of this step, so the error of such a coordinate is measured on the floor's scale
instead of its own. The resolution is 1e-7 in float64. In float32 the noise (about 5e-4 |f| at
h = 1e-3) is far above 1e-7, and the resolution is 1e-2: rounding alone never reads "wrong".

Kinks (kinks.py): where the two sides of a coordinate sit on different sides of a kink, the
difference is taken one-sided, on the side that stays with theta (error O(h): "acceptable near
kinks"); where both sides cross, the step shrinks (h/100, h/10^4); where that fails too, the
coordinate sits on a kink and is not judged (autograd returns one of the one-sided slopes there).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from dlrun.gradcheck.kinks import same_side

NOISE_ULPS = 4  # rounding error of one evaluation of the objective, in units of eps * |f|
GOOD, ACCEPTABLE, SUSPICIOUS = 1e-7, 1e-4, 1e-2
VERDICTS = ("good", "acceptable", "suspicious", "wrong")
RULES = {
    False: "good <= 1e-7 < acceptable < 1e-4 <= suspicious <= 1e-2 < wrong",
    True: "good <= 1e-7 < acceptable < 1e-4 <= wrong",  # strict
}
STRICT_STEP = 1e-4  # up to this step a float64 centered difference's truncation error stays far below 1e-4
# the default step per precision: torch's 1e-6 in float64; below it about eps^(1/3), where the
# rounding error eps |f| / h and the truncation error h^2 balance
STEPS = {torch.float64: 1e-6, torch.float32: 1e-3, torch.float16: 1e-1, torch.bfloat16: 1e-1}
SHRINK = (1.0, 1e-2, 1e-4)  # step factors tried when both sides of a coordinate cross a kink


def verdict(rel: float, strict: bool = False) -> str:
    """The verdict a relative error earns (NaN or inf: wrong); `strict` for a centered float64 difference."""
    if not math.isfinite(rel):
        return "wrong"
    if rel <= GOOD:
        return "good"
    if rel < ACCEPTABLE:
        return "acceptable"
    if rel <= SUSPICIOUS and not strict:
        return "suspicious"
    return "wrong"


def worst(verdicts) -> str:
    return max(verdicts, key=VERDICTS.index, default="good")


def floor(value: float, h: float, dtype: torch.dtype = torch.float64) -> float:
    """The gradient size below which a finite difference of step h in `dtype` cannot resolve a relative
    error of 1e-7 (float64) or 1e-2 (a lower precision)."""
    resolution = GOOD if dtype == torch.float64 else SUSPICIOUS
    return NOISE_ULPS * torch.finfo(dtype).eps * max(abs(value), 1.0) / h / resolution


def relative_error(a: torch.Tensor, n: torch.Tensor, floors: torch.Tensor) -> torch.Tensor:
    """|a - n| / max(|a|, |n|, floor), elementwise."""
    return (a - n).abs() / torch.maximum(torch.maximum(a.abs(), n.abs()), floors)


def sample(numel: int, k: int, seed: int, index: int) -> torch.Tensor:
    """Every coordinate when numel <= k, else k distinct ones drawn from (seed, index), sorted."""
    if numel <= k:
        return torch.arange(numel)
    g = torch.Generator().manual_seed(seed * 1_000_003 + index)
    return torch.randperm(numel, generator=g)[:k].sort().values


@dataclass
class Differences:
    """Numeric derivatives at some coordinates of one tensor."""

    values: torch.Tensor  # (k,) float64
    steps: torch.Tensor  # (k,) the step h each one used
    one_sided: torch.Tensor  # (k,) bool: a kink on one side, measured on the other
    at_kink: torch.Tensor  # (k,) bool: kinks on both sides at every step; not judged


Evaluate = Callable[[], tuple[float, list]]  # () -> (f, kink states) at the current values


def finite_differences(
    evaluate: Evaluate, t: torch.Tensor, coords: torch.Tensor, h: float, base: tuple[float, list]
) -> Differences:
    """Perturb t (in place, restored after) at each coordinate; base = evaluate() at the unperturbed values."""
    flat = t.detach().view(-1)  # shares t's storage
    f0, s0 = base
    k = len(coords)
    values, steps = torch.full((k,), math.nan, dtype=torch.float64), torch.zeros(k, dtype=torch.float64)
    one_sided, at_kink = torch.zeros(k, dtype=torch.bool), torch.zeros(k, dtype=torch.bool)
    with torch.no_grad():
        for j, i in enumerate(coords.tolist()):
            v = flat[i].item()
            for factor in SHRINK:
                step = h * factor
                up, down = v + step, v - step
                hp, hm = up - v, v - down  # the steps as stored (exact in float64)
                flat[i] = up
                fp, sp = evaluate()
                flat[i] = down
                fm, sm = evaluate()
                flat[i] = v
                plus_ok, minus_ok = same_side(sp, s0), same_side(sm, s0)
                steps[j] = step
                if plus_ok and minus_ok:
                    values[j] = (fp - fm) / (hp + hm)
                    break
                if plus_ok or minus_ok:  # one side crossed a kink: measure on the other
                    values[j] = (fp - f0) / hp if plus_ok else (f0 - fm) / hm
                    one_sided[j] = True
                    break
            else:
                at_kink[j] = True
    return Differences(values, steps, one_sided, at_kink)
