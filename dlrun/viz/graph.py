"""The computation graph autograd records (`dlrun viz graph`): from the output (an `--expr` formula's value, or a
model's loss on one example) back to the leaves it depends on (the variables, or the parameters and the input).
Each node is a backward function (MulBackward0 is drawn as Mul); backpropagation walks the arrows from the output
to the leaves, applying each node's local derivative (the chain rule)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from matplotlib.figure import Figure

from dlrun.errors import ConfigError

MAX_NODES = 80  # beyond this the picture is unreadable; a smaller model or formula is the way to see it


@dataclass
class Graph:
    labels: dict[int, str] = field(default_factory=dict)  # node id -> label
    edges: list[tuple[int, int]] = field(default_factory=list)  # (from, to): an input of `to` comes from `from`
    depth: dict[int, int] = field(default_factory=dict)  # 0 = the output


def trace(output: torch.Tensor, names: dict[int, str]) -> Graph:
    """The graph behind `output`; `names` maps id(leaf tensor) to its name (x1, layers.fc1.weight, ...)."""
    if output.grad_fn is None:
        raise ConfigError("the output does not depend on any variable: there is no graph to draw")
    g, stack, seen = Graph(), [(output.grad_fn, 0)], {}
    while stack:
        fn, depth = stack.pop()
        key = id(fn)
        if key in seen and seen[key] >= depth:
            continue
        seen[key] = depth
        g.depth[key] = depth
        if type(fn).__name__ == "AccumulateGrad":
            g.labels[key] = names.get(id(fn.variable), "leaf")
        else:
            g.labels[key] = type(fn).__name__.removesuffix("Backward0").removesuffix("Backward1")
        if len(g.labels) > MAX_NODES:
            raise ConfigError(f"the graph has more than {MAX_NODES} nodes; draw a smaller model or formula")
        for child, _ in fn.next_functions:
            if child is not None:
                if (id(child), key) not in g.edges:
                    g.edges.append((id(child), key))
                stack.append((child, depth + 1))
    return g


def expr_graph(text: str, at: list[float]) -> tuple[Graph, float]:
    from dlrun.gradcheck.expr import evaluate, parse, variables

    tree = parse(text)
    names = variables(tree)
    xs = {n: torch.tensor(v, dtype=torch.float64, requires_grad=True) for n, v in zip(names, at, strict=True)}
    value = evaluate(tree, xs)
    if value.dim():
        value = value.sum()  # a vector function: the graph of the sum of its outputs
    return trace(value, {id(t): n for n, t in xs.items()}), value.item()


def model_graph(cfg) -> tuple[Graph, float]:
    """The graph of a configured model's loss on one training example."""
    from dlrun.train import build

    s = build(cfg)
    x, y = s.data.train.x[:1].clone().requires_grad_(True), s.data.train.y[:1]
    s.model.eval()
    loss = s.loss_fn(s.model(x), y)
    names = {id(p): n.removeprefix("layers.") for n, p in s.model.named_parameters()} | {id(x): "input x"}
    return trace(loss, names), loss.item()


def plot_graph(g: Graph, title: str) -> Figure:
    from dlrun.viz.picture import figure

    levels: dict[int, list[int]] = {}
    for node, d in sorted(g.depth.items(), key=lambda kv: kv[1]):
        levels.setdefault(d, []).append(node)
    width = max(len(v) for v in levels.values())
    fig = figure(max(6, 1.6 * width), max(4, 1.0 * len(levels) + 1))
    ax = fig.add_subplot()
    pos = {}
    for d, nodes in levels.items():
        for i, node in enumerate(nodes):
            pos[node] = ((i + 1) / (len(nodes) + 1), 1 - (d + 0.5) / len(levels))
    for a, b in g.edges:
        ax.annotate("", xy=pos[b], xytext=pos[a], arrowprops={"arrowstyle": "->", "color": "0.5", "lw": 0.8})
    targets = {b for _, b in g.edges}  # nodes with inputs; the others are leaves (variables, parameters)
    for node, (x, y) in pos.items():
        leaf = node not in targets
        ax.text(x, y, g.labels[node], ha="center", va="center", fontsize=8,
                bbox={"boxstyle": "round", "fc": "#ffe9b3" if leaf else "#d6e6ff", "ec": "0.4"})  # fmt: skip
    ax.set_axis_off()
    ax.set_title(title, fontsize=10)
    return fig
