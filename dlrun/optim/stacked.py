"""One optimizer for K stacked members whose hyperparameters differ (dlrun/train/vector.py).

Every parameter has a leading member axis; each hyperparameter that may vary (lr, weight_decay,
momentum, gamma, beta1, beta2) is a [K] tensor, broadcast over that axis. The updates are the
formulas of torch.optim (impl=torch) and of dlrun/optim/lecture.py (impl=lecture), elementwise, so
member k's slice steps exactly as its single run's optimizer would (up to rounding). The running
sums sit in `self.state[p]` under the keys the single-run optimizer uses (exp_avg, momentum_buffer,
G, ...), so a member's slice saves as that optimizer's state_dict. Members that share every
hyperparameter need none of this: the single run's optimizer steps the stacked tensors directly.

The param group's `lr` is the schedule's factor (LambdaLR on a base lr of 1): member k's step size
is lr[k] * factor.
"""

from __future__ import annotations

import torch

VARYING = ("lr", "weight_decay", "momentum", "gamma", "beta1", "beta2")

# (impl, optim name) -> its stacked update step(opt, p, g, lr, h, state): the formula of the single-run optimizer
# with each hyperparameter a [K, 1, ...] tensor. An optimizer declared per_member=True (OptimCaps) registers one
# for each impl it has, built-in or plugin: `register("torch", "mine")(fn)`.
STEPS: dict[tuple[str, str], object] = {}


def register(impl: str, *names: str):
    def add(fn):
        for name in names:
            STEPS[(impl, name)] = fn
        return fn

    return add


class StackedOptimizer(torch.optim.Optimizer):
    """optim.name / optim.impl of the members' configs, with one value per member for each VARYING key."""

    def __init__(self, params, configs: list):
        first = configs[0]
        self.name, self.impl = first.name, first.impl
        if (self.impl, self.name) not in STEPS:
            raise ValueError(f"optim={self.name} impl={self.impl} has no stacked form")
        self.eps = getattr(first, "eps", 0.0)
        self.eps_inside_sqrt = getattr(first, "eps_inside_sqrt", False)
        params = list(params)
        device = params[0].device
        # float64, as torch.optim's Python floats: its bias corrections 1 - beta^t and 1 - beta are
        # computed in double precision, then each factor is rounded once to the parameter's dtype
        self.hyper = {
            key: torch.tensor([float(getattr(c, key)) for c in configs], dtype=torch.float64, device=device)
            for key in VARYING
            if hasattr(first, key)
        }
        super().__init__(params, dict(lr=1.0))

    def member_lrs(self) -> torch.Tensor:
        """[K]: each member's current step size (float64)."""
        return self.hyper["lr"] * self.param_groups[0]["lr"]

    @torch.no_grad()
    def step(self, closure=None):
        factor = self.param_groups[0]["lr"]
        for p in self.param_groups[0]["params"]:
            if p.grad is None:
                continue
            h = {k: v.view(-1, *[1] * (p.ndim - 1)) for k, v in self.hyper.items()}  # float64
            lr = h["lr"] * factor
            g = p.grad
            update = STEPS[(self.impl, self.name)]
            if not getattr(update, "decoupled", False) and bool((self.hyper["weight_decay"] != 0).any()):
                g = g + h["weight_decay"].to(p.dtype) * p  # coupled L2, as torch.optim and the lecture classes
            update(self, p, g, lr, h, self.state[p])
        return None


# ----------------------------------------------------------------------------- impl=torch
@register("torch", "gd", "sgd")
@register("lecture", "gd", "sgd")
def _sgd(self, p, g, lr, h, state):
    p.sub_(lr.to(p.dtype) * g)


@register("torch", "momentum")
def _torch_momentum(self, p, g, lr, h, state, nesterov=False):
    buf = state.get("momentum_buffer")
    if buf is None:  # torch's first step: v = g
        buf = state["momentum_buffer"] = g.clone()
    else:
        buf.mul_(h["momentum"].to(p.dtype)).add_(g)  # v = mu v + g
    p.sub_(lr.to(p.dtype) * (g + h["momentum"].to(p.dtype) * buf if nesterov else buf))


@register("torch", "nesterov")
def _torch_nesterov(self, p, g, lr, h, state):
    _torch_momentum(self, p, g, lr, h, state, nesterov=True)


@register("torch", "adagrad")
def _torch_adagrad(self, p, g, lr, h, state):
    if "sum" not in state:
        state["step"], state["sum"] = torch.zeros((), dtype=p.dtype), torch.zeros_like(p)
    state["step"] += 1
    state["sum"].addcmul_(g, g)
    p.sub_(lr.to(p.dtype) * (g / (state["sum"].sqrt() + self.eps)))


@register("torch", "rmsprop")
def _torch_rmsprop(self, p, g, lr, h, state):
    if "square_avg" not in state:
        state["step"], state["square_avg"] = torch.zeros((), dtype=p.dtype), torch.zeros_like(p)
    state["step"] += 1
    square_avg = state["square_avg"]
    square_avg.mul_(h["gamma"].to(p.dtype)).add_((1 - h["gamma"]).to(p.dtype) * g * g)
    p.sub_(lr.to(p.dtype) * (g / (square_avg.sqrt() + self.eps)))


@register("torch", "adam")
def _torch_adam(self, p, g, lr, h, state):
    if "exp_avg" not in state:
        state["step"] = torch.zeros((), dtype=p.dtype)
        state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
    state["step"] += 1
    t = float(state["step"])
    b1, b2 = h["beta1"], h["beta2"]
    state["exp_avg"].lerp_(g, (1 - b1).to(p.dtype))
    state["exp_avg_sq"].mul_(b2.to(p.dtype)).add_((1 - b2).to(p.dtype) * g * g)
    denom = state["exp_avg_sq"].sqrt() / (1 - b2**t).sqrt().to(p.dtype) + self.eps
    p.sub_((lr / (1 - b1**t)).to(p.dtype) * (state["exp_avg"] / denom))


# ----------------------------------------------------------------------------- impl=lecture
@register("lecture", "momentum")
def _lecture_momentum(self, p, g, lr, h, state):
    if "previous" not in state:
        state["previous"] = p.detach().clone()  # theta_{t-2}; the first step is plain gradient descent
    displacement = p - state["previous"]
    state["previous"].copy_(p)
    p.sub_(lr.to(p.dtype) * g).add_(h["momentum"].to(p.dtype) * displacement)


@register("lecture", "adagrad")
def _lecture_adagrad(self, p, g, lr, h, state):
    G = state.setdefault("G", torch.zeros_like(p))
    G.add_(g * g)
    p.sub_(lr.to(p.dtype) * g / (G + self.eps).sqrt())


@register("lecture", "rmsprop")
def _lecture_rmsprop(self, p, g, lr, h, state):
    G = state.setdefault("G", torch.zeros_like(p))
    G.mul_(h["gamma"].to(p.dtype)).add_((1 - h["gamma"]).to(p.dtype) * g * g)
    p.sub_(lr.to(p.dtype) * g / (G + self.eps).sqrt())


@register("lecture", "adam")
def _lecture_adam(self, p, g, lr, h, state):
    if "step" not in state:
        state["step"], state["m"], state["v"] = 0, torch.zeros_like(p), torch.zeros_like(p)
    state["step"] += 1
    t, b1, b2 = state["step"], h["beta1"], h["beta2"]
    state["m"].mul_(b1.to(p.dtype)).add_((1 - b1).to(p.dtype) * g)
    state["v"].mul_(b2.to(p.dtype)).add_((1 - b2).to(p.dtype) * g * g)
    m_hat, v_hat = state["m"] / (1 - b1**t).to(p.dtype), state["v"] / (1 - b2**t).to(p.dtype)
    denominator = (v_hat + self.eps).sqrt() if self.eps_inside_sqrt else v_hat.sqrt() + self.eps
    p.sub_(lr.to(p.dtype) * m_hat / denominator)


@register("torch", "adamw")
def _torch_adamw(self, p, g, lr, h, state):
    p.mul_((1 - lr * h["weight_decay"]).to(p.dtype))  # decoupled, before the Adam step (as torch.optim.AdamW)
    _torch_adam(self, p, g, lr, h, state)


_torch_adamw.decoupled = True
