"""Newton's method with the exact Hessian (`optim=newton`), for small models such as logistic regression.

    theta <- theta - lr (H + (damping + weight_decay) I)^-1 (g + weight_decay theta)

g and H are the gradient and the Hessian of the objective (data loss + regularization term) over
all parameters flattened into one vector of n numbers, by double backward through autograd: the
Hessian costs n backward passes and n^2 numbers, so models above optim.max_params are refused.
The trainer runs it full batch (one step per epoch on the whole train split). On a convex,
twice-differentiable objective such as L2-regularized logistic regression it converges in a few
steps (quadratically near the optimum).
"""

from __future__ import annotations

import torch


class Newton(torch.optim.Optimizer):
    """Exact (damped) Newton steps. `step(closure)` needs a closure that returns the objective as a
    differentiable scalar, recomputed at the current parameters; it does not call backward."""

    def __init__(self, params, lr: float = 1.0, damping: float = 1e-4, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, damping=damping, weight_decay=weight_decay))
        if len(self.param_groups) != 1:
            raise ValueError("Newton takes one parameter group (the Hessian couples every parameter)")

    @torch.no_grad()
    def step(self, closure=None):
        if closure is None:
            raise ValueError("Newton.step needs a closure that returns the objective")
        group = self.param_groups[0]
        params = [p for p in group["params"] if p.requires_grad]
        with torch.enable_grad():
            objective = closure()
            g = flat(torch.autograd.grad(objective, params, create_graph=True), params)  # (n,)
            H = hessian(g, params)  # (n, n)
        theta = torch.cat([p.reshape(-1) for p in params])  # (n,)
        g = g.detach() + group["weight_decay"] * theta
        shift = group["damping"] + group["weight_decay"]
        A = H + shift * torch.eye(len(theta), dtype=H.dtype, device=H.device)
        try:
            direction = torch.linalg.solve(A, g)
        except torch.linalg.LinAlgError:  # singular: the least-squares (minimum-norm) solution
            direction = torch.linalg.lstsq(A.cpu(), g.cpu().unsqueeze(1), driver="gelsd").solution.squeeze(1)
            direction = direction.to(theta.device)
        torch.nn.utils.vector_to_parameters(theta - group["lr"] * direction, params)
        return objective.detach()


def flat(grads, params) -> torch.Tensor:
    """Concatenate per-parameter gradients into one vector; None (no dependence) counts as zero."""
    pairs = zip(grads, params, strict=True)
    return torch.cat([(gr if gr is not None else torch.zeros_like(p)).reshape(-1) for gr, p in pairs])


def hessian(g: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    """H[i] = d g_i / d theta, one backward pass per row; symmetrized against rounding."""
    n = len(g)
    if not g.requires_grad:  # the objective is linear in theta
        return torch.zeros(n, n, dtype=g.dtype, device=g.device)
    rows = [flat(torch.autograd.grad(g[i], params, retain_graph=True, allow_unused=True), params) for i in range(n)]
    H = torch.stack(rows)
    return 0.5 * (H + H.T)
