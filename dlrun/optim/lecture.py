"""The lectures' optimizers, written out line by line (`optim.impl=lecture`).

Each class is a torch.optim.Optimizer, so schedules (LambdaLR), checkpoints and resume work as
with PyTorch's own: hyperparameters live in `param_groups` (under the config's names), running
sums live in `self.state[p]`. g is the gradient of the objective at the current parameters.

Where eps sits (the one place where the forms differ):

    optimizer   impl=lecture (formula of ../shared/curriculum.md)   impl=torch (torch.optim)
    adagrad     alpha g / sqrt(G + eps)                             alpha g / (sqrt(G) + eps)
    rmsprop     alpha g / sqrt(G + eps)                             alpha g / (sqrt(G) + eps)
    adam        eps_inside_sqrt=false: m_hat / (sqrt(v_hat) + eps)  m_hat / (sqrt(v_hat) + eps)
                eps_inside_sqrt=true:  m_hat / sqrt(v_hat + eps)    (refused)

The heavy-ball update equals torch's SGD momentum while the learning rate is constant; with a
schedule they differ (see HeavyBall). weight_decay is coupled L2 in every class here, as in
torch.optim: g <- g + weight_decay * theta (the gradient of weight_decay/2 ||theta||^2, biases
included). regularizer=l2 is the lecture's form (weights only).
"""

from __future__ import annotations

import torch


class LectureOptimizer(torch.optim.Optimizer):
    """Runs `update(p, g, group, state)` for every parameter that has a gradient."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad if group["weight_decay"] == 0 else p.grad + group["weight_decay"] * p
                self.update(p, g, group, self.state[p])
        return loss

    def update(self, p: torch.Tensor, g: torch.Tensor, group: dict, state: dict) -> None:
        raise NotImplementedError


class GradientDescent(LectureOptimizer):
    """Gradient descent: theta_t = theta_{t-1} - alpha g(theta_{t-1}) (full batch, one sample or a mini-batch)."""

    def __init__(self, params, lr: float, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay))

    def update(self, p, g, group, state):
        p.add_(g, alpha=-group["lr"])


class HeavyBall(LectureOptimizer):
    """Momentum: theta_t = theta_{t-1} - alpha_t g(theta_{t-1}) + gamma (theta_{t-1} - theta_{t-2}).

    alpha_t is the group's current lr (a schedule changes it), gamma is `momentum`; theta_{-1} =
    theta_0, so the first step is plain gradient descent. With a constant lr this is torch's SGD
    momentum (v = gamma v + g, theta -= lr v). With a changing lr they differ: torch multiplies the
    whole velocity by the current lr, so a drop of lr by 10x shrinks the momentum term at once; here
    the last displacement theta_{t-1} - theta_{t-2} keeps its size and only the new gradient term
    uses the new lr.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    def update(self, p, g, group, state):
        if "previous" not in state:
            state["previous"] = p.detach().clone()  # theta_{t-2}
        displacement = p - state["previous"]  # theta_{t-1} - theta_{t-2}
        state["previous"].copy_(p)
        p.add_(g, alpha=-group["lr"]).add_(displacement, alpha=group["momentum"])


class AdaGrad(LectureOptimizer):
    """AdaGrad: G_t = G_{t-1} + g_t^2, theta_t = theta_{t-1} - alpha / sqrt(G_t + eps) g_t (eps inside the root).

    G holds the squares of every gradient so far, the current one included (the lecture's
    G_{j,t-1} when it steps from theta_{t-1}). PyTorch's Adagrad uses alpha g / (sqrt(G) + eps).
    """

    def __init__(self, params, lr: float, eps: float = 1e-10, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, eps=eps, weight_decay=weight_decay))

    def update(self, p, g, group, state):
        if "G" not in state:
            state["G"] = torch.zeros_like(p)
        G = state["G"]
        G.add_(g * g)
        p.addcdiv_(g, (G + group["eps"]).sqrt(), value=-group["lr"])


class RMSProp(LectureOptimizer):
    """RMSProp: G_t = gamma G_{t-1} + (1 - gamma) g_t^2, theta_t = theta_{t-1} - alpha / sqrt(G_t + eps) g_t.

    eps inside the root, G starts at 0 and includes the current gradient. PyTorch's RMSprop (its
    `alpha` is gamma here) uses alpha g / (sqrt(G) + eps).
    """

    def __init__(self, params, lr: float, gamma: float = 0.9, eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, gamma=gamma, eps=eps, weight_decay=weight_decay))

    def update(self, p, g, group, state):
        if "G" not in state:
            state["G"] = torch.zeros_like(p)
        G = state["G"]
        G.mul_(group["gamma"]).add_(g * g, alpha=1 - group["gamma"])
        p.addcdiv_(g, (G + group["eps"]).sqrt(), value=-group["lr"])


class Adam(LectureOptimizer):
    """Adam (Kingma and Ba 2015) with bias correction, t = 1, 2, ...:

    m_t = beta1 m_{t-1} + (1 - beta1) g_t          m_hat = m_t / (1 - beta1^t)
    v_t = beta2 v_{t-1} + (1 - beta2) g_t^2        v_hat = v_t / (1 - beta2^t)
    eps_inside_sqrt=true:   theta_{t+1} = theta_t - alpha m_hat / sqrt(v_hat + eps)    (the lecture)
    eps_inside_sqrt=false:  theta_{t+1} = theta_t - alpha m_hat / (sqrt(v_hat) + eps)  (the paper, PyTorch)
    """

    def __init__(
        self,
        params,
        lr: float,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        eps_inside_sqrt: bool = False,
        weight_decay: float = 0.0,
    ):
        defaults = dict(
            lr=lr, beta1=beta1, beta2=beta2, eps=eps, eps_inside_sqrt=eps_inside_sqrt, weight_decay=weight_decay
        )
        super().__init__(params, defaults)

    def update(self, p, g, group, state):
        if "step" not in state:
            state["step"] = 0
            state["m"] = torch.zeros_like(p)
            state["v"] = torch.zeros_like(p)
        state["step"] += 1
        t, b1, b2, eps = state["step"], group["beta1"], group["beta2"], group["eps"]
        m, v = state["m"], state["v"]
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).add_(g * g, alpha=1 - b2)
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        denominator = (v_hat + eps).sqrt() if group["eps_inside_sqrt"] else v_hat.sqrt() + eps
        p.addcdiv_(m_hat, denominator, value=-group["lr"])
