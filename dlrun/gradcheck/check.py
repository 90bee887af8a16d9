"""Check a scalar objective's gradients three ways: autograd, finite differences, torch.autograd.gradcheck.

A `Problem` is an nn.Module whose forward(*args) returns a float64 scalar; its parameters, and the
floating-point args named in `checked_args`, are the tensors whose gradients are checked. Two
problems are built here: the trainer's objective on one batch of the configured data
(`config_problem`) and a user's module or autograd.Function reduced to a scalar (`module_problem`).
`run` checks one and returns plain data (a dict) for the CLI to print or dump as JSON.

The verdict of a tensor uses what the check knows (numeric.py): the precision the objective computes
in (a module may cast to float32 inside), whether a coordinate's difference was centered or one-sided
next to a kink, and, in float64, torch.autograd.gradcheck on that tensor alone: a Jacobian mismatch
there makes it wrong whatever its sampled error.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from dlrun import regularizers
from dlrun.errors import ConfigError, RunFailed
from dlrun.gradcheck import numeric
from dlrun.gradcheck.kinks import KinkWatch
from dlrun.plugins import PluginExit, no_exit

TORCH_EPS, TORCH_ATOL, TORCH_RTOL = 1e-6, 1e-5, 1e-3  # torch.autograd.gradcheck's defaults
FULL_LIMIT = 256  # torch.autograd.gradcheck runs on every coordinate up to this many, else on the sampled ones


# ----------------------------------------------------------------------------- objectives
class LossObjective(nn.Module):
    """L(theta) = loss(model(x), y) + Omega(theta): the trainer's objective on one batch."""

    def __init__(self, model: nn.Module, loss_fn, reg_cfg=None):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn
        self.reg_cfg = reg_cfg  # None: the data loss alone

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = self.loss_fn(self.model(x), y)
        if self.reg_cfg is not None:
            reg = regularizers.build(self.reg_cfg, self.model)  # on the parameters in use now
            omega = reg() if reg is not None else None
            if omega is not None:
                loss = loss + omega
        return loss


class ProjectedOutput(nn.Module):
    """sum_k <w_k, out_k>: a module's or a Function's outputs reduced to a scalar by fixed random weights,
    so every output element reaches the gradient."""

    def __init__(self, target, weights: list[torch.Tensor | None]):
        super().__init__()
        if isinstance(target, nn.Module):
            self.target = target
        else:
            self.function = target  # a torch.autograd.Function subclass
        self.weights = weights  # one per output; None for an output that is not floating point

    def call(self, *inputs):
        return self.target(*inputs) if hasattr(self, "target") else self.function.apply(*inputs)

    def forward(self, *inputs) -> torch.Tensor:
        outs = as_tuple(self.call(*inputs))
        return sum((w * o).sum() for w, o in zip(self.weights, outs, strict=True) if w is not None)


def as_tuple(out) -> tuple:
    return tuple(out) if isinstance(out, tuple | list) else (out,)


@dataclass
class Problem:
    objective: nn.Module  # forward(*args) -> scalar; its parameters are checked
    args: list[Any]  # positional inputs of the objective
    checked_args: dict[str, int]  # name -> position in args, for the inputs whose gradients are checked
    describe: dict[str, Any]  # what is checked, for the report
    prefix: str = ""  # dropped from parameter names in the report
    manual: nn.Module | None = None  # the same objective with hand-written bprop (same parameters)
    watch_root: nn.Module | None = None  # where kinks are watched
    l1_weights: list[torch.Tensor] = field(default_factory=list)  # |w| kinks of an L1 penalty
    skipped: list[dict[str, str]] = field(default_factory=list)  # tensors not checked, and why
    source: str = "the objective"  # what is checked, for error messages


# ----------------------------------------------------------------------------- the trainer's objective
def build_model(cfg):
    """(model, loss name, loss_fn, data) as dlrun.train.build makes them (same seed, same init), without the
    optimizer (building one imports torch's compiler, seconds of start-up a gradient check does not need)."""
    from dlrun.train.loop import build_model as build_for_training

    _, data, loss_name, loss_fn, model = build_for_training(cfg)
    return model, loss_name, loss_fn, data


def _has_term(reg_cfg, model: nn.Module) -> bool:
    """Whether the regularizer adds Omega to the loss (weight_decay and dropout do not)."""
    reg = regularizers.build(reg_cfg, model)
    return reg is not None and reg() is not None


def config_problem(cfg, batch: int = 8, reg: bool = True, seed: int = 0) -> Problem:
    """The configured model and loss in float64 on `batch` training examples; dropout off, batch norm in eval."""
    model, loss_name, loss_fn, data = build_model(cfg)
    model = model.double().eval()
    train = data.train
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(train), generator=g)[:batch].to(train.x.device)
    x, y = train.x[idx], train.y[idx]
    x = x.double() if x.is_floating_point() else x
    y = y.double() if y.is_floating_point() else y
    reg_cfg = cfg.regularizer if reg and _has_term(cfg.regularizer, model) else None
    objective = LossObjective(model, loss_fn, reg_cfg)
    manual = None
    if cfg.backprop == "manual":
        from dlrun.models import manual as manual_backprop

        manual_model, manual_loss = manual_backprop.build(model, cfg, loss_name)  # shares the parameters
        manual = LossObjective(manual_model.eval(), manual_loss, reg_cfg)
    checked, skipped = {}, []
    if x.is_floating_point():
        checked["input x"] = 0
    else:
        skipped.append({"name": "input x", "reason": f"{x.dtype} input has no derivative"})
    describe = {
        "model": cfg.model.name,
        "data": cfg.data.name,
        "loss": loss_name,
        "regularizer": reg_cfg.name if reg_cfg is not None else "none",
        "backprop": cfg.backprop,
        "batch": len(x),
    }
    l1 = regularizers.weights(model) if reg_cfg is not None and reg_cfg.name in ("l1", "elastic") else []
    source = f"model={cfg.model.name}"
    return Problem(objective, [x, y], checked, describe, "model.", manual, model, l1, skipped, source)


# ----------------------------------------------------------------------------- a user's module or Function
def load_factory(spec: str):
    """'path/to/file.py:factory' -> the factory function (ConfigError when the path or the name is wrong)."""
    path_text, sep, name = spec.rpartition(":")
    if not sep or not path_text or not name:
        raise ConfigError(f"--module {spec}: expected FILE.py:FACTORY, e.g. --module my_layer.py:make")
    path = Path(path_text)
    if not path.is_file():
        raise ConfigError(f"--module {spec}: no file {path}")
    module_name = "dlrun_gradcheck_" + re.sub(r"\W", "_", path.stem)
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise ConfigError(f"--module {spec}: {path} is not a Python file")
    source = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = source  # dataclasses and pickling look their module up here
    try:
        with no_exit():
            loader_spec.loader.exec_module(source)
    except (SystemExit, PluginExit) as e:
        raise ConfigError(f"--module {spec}: importing {path} {exit_call(e)}") from None
    except Exception as e:  # the user's file: any failure is bad input, told in one line
        raise ConfigError(f"--module {spec}: importing {path} failed: {one_line(e)}") from None
    factory = getattr(source, name, None)
    if not callable(factory):
        names = [
            n
            for n, v in vars(source).items()
            if inspect.isfunction(v) and v.__module__ == module_name and not n.startswith("_")
        ]
        raise ConfigError(
            f"--module {spec}: {path} has no function '{name}'; it defines: {', '.join(names) or 'no functions'}"
        )
    return factory


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def exit_call(e: BaseException) -> str:
    code = "" if e.code is None else repr(e.code)
    call = "os._exit" if isinstance(e, PluginExit) else "sys.exit"
    return f"called {call}({code}); a module to check must return, not exit"


@contextmanager
def refuse_exit(where: str):
    """sys.exit in the user's code is bad input: its status (0 reads as a pass) must not become dlrun's."""
    try:
        with no_exit():
            yield
    except (SystemExit, PluginExit) as e:
        raise ConfigError(f"{where} {exit_call(e)}") from None


def non_finite(t: torch.Tensor) -> str | None:
    """'NaN (2 of 20 values)' (or inf) when a floating tensor holds non-finite values, else None."""
    if not t.is_floating_point():
        return None
    bad = ~torch.isfinite(t.detach())
    if not bad.any():
        return None
    what = "NaN" if torch.isnan(t.detach()).any() else "inf"
    return f"{what} ({int(bad.sum())} of {t.numel():,} values)"


def is_function_class(obj) -> bool:
    return inspect.isclass(obj) and issubclass(obj, torch.autograd.Function)


def argument_names(target, n: int) -> list[str]:
    """The names of the target's forward arguments (after ctx for a Function), else input[0], input[1], ..."""
    fn = target.forward
    params = list(inspect.signature(fn).parameters.values())
    if is_function_class(target):
        params = params[1:]  # ctx
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(names) >= n and len(set(names[:n])) == n:
        return names[:n]
    return [f"input[{i}]" for i in range(n)]


def module_problem(spec: str, seed: int = 0) -> Problem:
    """factory() -> (nn.Module or autograd.Function subclass, example input or tuple of inputs)."""
    factory = load_factory(spec)
    try:
        with no_exit():
            made = factory()
    except (SystemExit, PluginExit) as e:
        raise ConfigError(f"--module {spec}: the factory {exit_call(e)}") from None
    except Exception as e:
        raise ConfigError(f"--module {spec}: the factory raised {one_line(e)}") from None
    shape = "(module_or_function, example_input)"
    if not isinstance(made, tuple | list) or len(made) != 2:
        raise ConfigError(f"--module {spec}: the factory must return {shape}, not {type(made).__name__}")
    target, example = made
    if not (isinstance(target, nn.Module) or is_function_class(target)):
        raise ConfigError(
            f"--module {spec}: the factory must return {shape} with an nn.Module or a torch.autograd.Function "
            f"subclass first, not {type(target).__name__}"
        )
    inputs = list(as_tuple(example))
    if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise ConfigError(
            f"--module {spec}: the factory must return {shape} with a tensor or a tuple of tensors second"
        )
    names = argument_names(target, len(inputs))
    empty = [name for name, t in zip(names, inputs, strict=True) if t.numel() == 0]
    if empty:
        raise ConfigError(f"--module {spec}: the example input {empty[0]} is empty; give at least one value to check")
    # gradients are checked at a point: NaN or inf there is a broken example, not a wrong gradient
    for name, t in zip(names, inputs, strict=True):
        if (bad := non_finite(t)) is not None:
            raise ConfigError(f"--module {spec}: the example input {name} holds {bad}; give finite values")
    if isinstance(target, nn.Module):
        for name, t in target.named_parameters():
            if (bad := non_finite(t)) is not None:
                raise ConfigError(f"--module {spec}: the parameter {name} holds {bad}")
    inputs = [t.detach().double().contiguous() if t.is_floating_point() else t.detach() for t in inputs]
    if isinstance(target, nn.Module):
        target = target.double().eval()  # dropout off, batch norm on its running statistics
    try:
        with torch.no_grad(), no_exit():
            outs = as_tuple(ProjectedOutput(target, []).call(*inputs))
    except (SystemExit, PluginExit) as e:
        raise ConfigError(f"--module {spec}: running it on the example input {exit_call(e)}") from None
    except Exception as e:
        raise ConfigError(f"--module {spec}: running it on the example input raised {one_line(e)}") from None
    g = torch.Generator().manual_seed(seed)
    weights = [
        torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.device)
        if isinstance(o, torch.Tensor) and o.is_floating_point()
        else None
        for o in outs
    ]
    if not any(w is not None for w in weights):
        raise ConfigError(f"--module {spec}: its output has no floating-point tensor to differentiate")
    for i, (w, o) in enumerate(zip(weights, outs, strict=True)):
        if w is not None and (bad := non_finite(o)) is not None:
            which = f"output {i}" if len(outs) > 1 else "its output"
            raise ConfigError(f"--module {spec}: {which} at the example input holds {bad}")
    checked, skipped = {}, []
    for i, (name, t) in enumerate(zip(names, inputs, strict=True)):
        if t.is_floating_point():
            checked[name] = i
        else:
            skipped.append({"name": name, "reason": f"{t.dtype} input has no derivative"})
    kind = "module" if isinstance(target, nn.Module) else "function"
    describe = {"module": spec, "kind": kind, "class": getattr(target, "__name__", type(target).__name__)}
    root = target if isinstance(target, nn.Module) else None
    objective = ProjectedOutput(target, weights)
    return Problem(objective, inputs, checked, describe, "target.", None, root, [], skipped, f"--module {spec}")


# ----------------------------------------------------------------------------- the check
def _tensors(p: Problem) -> list[tuple[str, str, torch.Tensor]]:
    """(name, kind, tensor) for every checked tensor: parameters, then inputs."""
    out = []
    for name, t in p.objective.named_parameters():
        if t.requires_grad:
            out.append((display_name(name, p.prefix), "parameter", t))
    for name, i in p.checked_args.items():
        out.append((name, "input", p.args[i]))
    return out


def display_name(name: str, prefix: str) -> str:
    return name.removeprefix(prefix).removeprefix("layers.")


class _DtypeWatch(TorchFunctionMode):
    """The floating dtypes that computations produce: ops that take a floating tensor (a constant created in
    float32 and promoted at once computes nothing in float32)."""

    def __init__(self):
        super().__init__()
        self.dtypes: set[torch.dtype] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if any(isinstance(a, torch.Tensor) and a.is_floating_point() for a in _leaves(args, kwargs)):
            self.dtypes |= {o.dtype for o in _leaves(out) if isinstance(o, torch.Tensor) and o.is_floating_point()}
        return out


def _leaves(*values):
    for v in values:
        if isinstance(v, tuple | list):
            yield from v
        elif isinstance(v, dict):
            yield from v.values()
        else:
            yield v


def precision(p: Problem) -> torch.dtype:
    """The lowest floating precision one forward pass of the objective computes in (float64 unless the
    module casts down inside)."""
    watch = _DtypeWatch()
    with torch.no_grad(), watch:
        p.objective(*p.args)
        if p.manual is not None:
            p.manual(*p.args)
    return max(watch.dtypes, key=lambda d: torch.finfo(d).eps, default=torch.float64)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _gradients(objective: nn.Module, args: list, tensors: list[torch.Tensor]) -> tuple[float, list[torch.Tensor]]:
    with torch.enable_grad():
        value = objective(*args)
        try:
            grads = torch.autograd.grad(value, tensors, allow_unused=True)
        except Exception as e:  # e.g. a custom backward returning a gradient of the wrong shape
            raise RunFailed(f"gradcheck: the backward pass failed: {one_line(e)}") from None
    return value.item(), [g if g is not None else torch.zeros_like(t) for g, t in zip(grads, tensors, strict=True)]


def run(
    p: Problem, h: float | None = None, coords: int = 20, seed: int = 0, torch_check: bool = True
) -> dict[str, Any]:
    """Autograd (and manual) gradients against finite differences, tensor by tensor; plain data back.
    h=None: the step that suits the objective's precision (numeric.STEPS)."""
    if h is not None and not h > 0:
        raise ConfigError(f"--h {h}: the finite-difference step must be > 0 (1e-6 suits float64)")
    if coords < 1:
        raise ConfigError(f"--coords {coords}: check at least 1 coordinate per tensor")
    with refuse_exit(f"{p.source}: its forward or backward"):  # they run from here on
        return _run(p, h, coords, seed, torch_check)


def _run(p: Problem, h: float | None, coords: int, seed: int, torch_check: bool) -> dict[str, Any]:
    dtype = precision(p)
    h = numeric.STEPS.get(dtype, 1e-1) if h is None else h
    # centered float64 differences of a small step are exact enough to call 1e-4 wrong (numeric.py)
    strict = dtype == torch.float64 and h <= numeric.STRICT_STEP
    named = _tensors(p)
    tensors = [t for _, _, t in named]
    for _, kind, t in named:
        if kind == "input":
            t.requires_grad_(True)
    value, auto = _gradients(p.objective, p.args, tensors)
    manual = _gradients(p.manual, p.args, tensors)[1] if p.manual is not None else None

    watch = KinkWatch(p.watch_root, p.l1_weights)

    def evaluate():
        watch.start()
        with torch.no_grad():
            f = p.objective(*p.args).item()
        return f, watch.states()

    rows, clean = [], {}
    try:
        base = evaluate()
        for index, (name, kind, t) in enumerate(named):
            idx = numeric.sample(t.numel(), coords, seed, index)
            d = numeric.finite_differences(evaluate, t, idx, h, base)
            m = manual[index] if manual else None
            rows.append(_row(name, kind, t, idx, d, auto[index], m, value, dtype, h, strict))
            clean[name] = idx[~(d.one_sided | d.at_kink)]
    finally:
        watch.close()

    report = {
        **p.describe,
        "value": value,
        "dtype": dtype_name(dtype),
        "h": h,
        "floor": numeric.floor(value, h, dtype),
        "kinks": watch.kinds,
        "rule": rule(dtype, h, strict, watch.active),
        "tensors": rows,
        "skipped": p.skipped,
    }
    if torch_check:
        if dtype == torch.float64:
            # torch's own step, or ours where it is smaller: a coordinate clean at step h stays clean below it
            checked = torch_gradcheck(p, named, clean, smooth=not watch.active, eps=min(TORCH_EPS, h))
        else:
            checked = {
                "status": "not run",
                "passed": None,
                "failed": [],
                "message": f"the objective computes in {dtype_name(dtype)}; its tolerances are for float64",
            }
        report["torch_gradcheck"] = checked
        for row in rows:
            if row["name"] in checked["failed"]:
                # a Jacobian mismatch in float64 is a wrong gradient, also at coordinates the sample missed
                why = "torch.autograd.gradcheck finds a Jacobian mismatch"
                row["why"] = f"{row['why']}; {why}" if row["verdict"] == "wrong" else why
                row["verdict"] = "wrong"
    report["verdict"] = numeric.worst(r["verdict"] for r in rows)
    report["wrong"] = [r["name"] for r in rows if r["verdict"] == "wrong"]
    report["suspicious"] = [r["name"] for r in rows if r["verdict"] == "suspicious"]
    return report


def rule(dtype: torch.dtype, h: float, strict: bool, kinks: bool) -> str:
    """How the verdicts of this check are decided, in one line."""
    loose = numeric.RULES[False]
    torch_rule = "; a tensor torch.autograd.gradcheck fails: wrong"
    if strict:
        one_sided = f"; one-sided ones next to a kink: {loose}" if kinks else ""
        return f"centered differences in float64: {numeric.RULES[True]}{one_sided}{torch_rule}"
    if dtype == torch.float64:
        return f"{loose} (h = {h:g} > 1e-4){torch_rule}"
    return f"{loose} (in {dtype_name(dtype)}, rounding reaches the suspicious band)"


def _row(name, kind, t, idx, d: numeric.Differences, auto, manual, value, dtype, h, strict) -> dict[str, Any]:
    judged = ~d.at_kink
    floors = torch.tensor([numeric.floor(value, s, dtype) for s in d.steps.tolist()], dtype=torch.float64)
    floors = torch.where(d.one_sided, 2 * floors, floors)  # one evaluation less to average the rounding over
    n = d.values[judged]
    fl = floors[judged]
    centered = ~d.one_sided[judged]

    def errors(a: torch.Tensor, b: torch.Tensor) -> tuple[float | None, torch.Tensor]:
        if not len(a):
            return None, torch.zeros(0, dtype=torch.float64)
        return (a - b).abs().max().item(), numeric.relative_error(a, b, fl)

    def largest(rel: torch.Tensor) -> float | None:
        return rel.max().item() if len(rel) else None

    a = auto.detach().reshape(-1)[idx].cpu()[judged]
    max_abs, rel = errors(a, n)
    row = {
        "name": name,
        "kind": kind,
        "shape": list(t.shape),
        "numel": t.numel(),
        "checked": len(idx),
        "max_abs_error": max_abs,
        "max_rel_error": largest(rel),
        "near_kinks": int(d.one_sided.sum()),
        "at_kinks": int(d.at_kink.sum()),
    }
    judgements = [_judge(rel, centered, strict, dtype, h)]
    if manual is not None:
        m = manual.detach().reshape(-1)[idx].cpu()[judged]
        row["manual_max_abs_error"], manual_rel = errors(m, n)
        row["manual_max_rel_error"] = largest(manual_rel)
        between = errors(m, a)[1]  # two analytic gradients: no difference step, so centered everywhere
        row["manual_vs_autograd_rel_error"] = largest(between)
        judgements.append(_judge(manual_rel, centered, strict, dtype, h, "manual: "))
        judgements.append(_judge(between, torch.ones_like(centered), dtype == torch.float64, dtype, h, "manual: "))
    row["verdict"], row["why"] = max(judgements, key=lambda j: numeric.VERDICTS.index(j[0]))
    return row


def _judge(rel, centered, strict: bool, dtype, h: float, label: str = "") -> tuple[str, str]:
    """(verdict, why) for the relative errors of one tensor's judged coordinates: the centered ones by the
    strict rule where it applies, the one-sided ones (next to a kink) by CS231n's."""
    if not len(rel):
        return "acceptable", ""  # every coordinate sits on a kink: nothing to judge
    worst = ("good", 0.0, False)
    for one_sided, mask in ((False, centered), (True, ~centered)):
        if mask.any():
            r = rel[mask].max().item()
            v = numeric.verdict(r, strict and not one_sided)
            if numeric.VERDICTS.index(v) >= numeric.VERDICTS.index(worst[0]):
                worst = (v, r, one_sided)
    v, r, one_sided = worst
    if v == "wrong":
        limit = ">= 1e-4 in a centered float64 difference" if strict and not one_sided else "> 1e-2"
        return v, f"{label}relative error {r:.1e} {limit}"
    if v != "suspicious":
        return v, ""
    if one_sided:
        cause = "next to a kink, where the difference is one-sided (error O(h))"
    elif dtype != torch.float64:
        cause = f"in {dtype_name(dtype)}, whose rounding reaches this"
    else:
        cause = f"with h = {h:g}, whose truncation error can reach this"
    return v, f"{label}relative error {r:.1e} {cause}"


# ----------------------------------------------------------------------------- torch.autograd.gradcheck
def torch_gradcheck(
    p: Problem, named, clean: dict[str, torch.Tensor], smooth: bool, eps: float = TORCH_EPS
) -> dict[str, Any]:
    """torch.autograd.gradcheck on the objective under test (the manual one if any), as a function of each
    tensor in turn (so that every tensor with a mismatch is named, not only the first): its parameters (and,
    for --module, its inputs), every coordinate when the objective is smooth and there are at most FULL_LIMIT,
    else the sampled coordinates that sit away from kinks, through a wrapper that perturbs only those (its
    centered differences would cross the kinks our one-sided ones avoid)."""
    from torch.autograd.gradcheck import GradcheckError

    objective = p.manual if p.manual is not None else p.objective
    chosen = [(n, k, t) for n, k, t in named if k == "parameter" or p.describe.get("module")]
    total = sum(t.numel() for _, _, t in chosen)
    full = smooth and total <= FULL_LIMIT
    param_key = {display_name(k, p.prefix): k for k, _ in objective.named_parameters()}
    position = {name: i for name, i in p.checked_args.items()}
    base_args = [a.detach() for a in p.args]
    result = {
        "mode": "full" if full else "subset",
        "coordinates": 0,
        "of": total,
        "eps": eps,
        "atol": TORCH_ATOL,
        "rtol": TORCH_RTOL,
        "status": "passed",
        "failed": [],
        "message": "",
    }
    for name, _, t in chosen:
        idx = None if full else clean[name]
        if idx is not None and not len(idx):
            continue
        base = t.detach()
        sub = base.clone() if idx is None else base.reshape(-1)[idx.to(t.device)].clone()
        result["coordinates"] += sub.numel()

        def fn(v, name=name, base=base, idx=idx):
            whole = v if idx is None else base.reshape(-1).index_put((idx.to(base.device),), v).view_as(base)
            params, args = {}, list(base_args)
            if name in position:
                args[position[name]] = whole
            else:
                params[param_key[name]] = whole
            return torch.func.functional_call(objective, params, tuple(args))

        try:
            torch.autograd.gradcheck(fn, (sub.requires_grad_(True),), eps=eps, atol=TORCH_ATOL, rtol=TORCH_RTOL)
        except GradcheckError as e:
            message = str(e).strip().splitlines()[0].rstrip(",") + f" ({name})"
            if message.startswith("Jacobian mismatch"):  # other complaints (reentrancy, ...) are not a wrong value
                result["failed"].append(name)
            result["message"] = result["message"] or message
            result["status"] = "failed"
        except Exception as e:  # the objective does not go through torch.func.functional_call, ...
            result["message"] = result["message"] or f"could not run: {one_line(e)}"
            result["status"] = "failed" if result["failed"] else "not run"
            break
    result["passed"] = {"passed": True, "failed": False}.get(result["status"])
    return result
