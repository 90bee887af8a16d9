"""Lecture items as the slides write them: one activation per hidden layer, layer and group norm in CNNs,
init=default's biases, the summary's floored sizes and its rows adding up, and the fixes a student's tour
found (PGD's summary line, claims run with overrides, a capitalized activation)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dlrun.config import compose
from dlrun.errors import ConfigError
from dlrun.models import build
from dlrun.models.summary import summarize
from tests.conftest import dlrun


def model_of(*overrides: str, shape=(1, 8, 8), out=10):
    torch.manual_seed(0)
    return build(compose(list(overrides)).model, shape, out)


# ----------------------------------------------------------------------------- activations per layer
def test_one_activation_per_hidden_layer():
    m = model_of("model.hidden=[8,8,8]", "model.activation=[relu,tanh,sigmoid]")
    assert [type(getattr(m.layers, f"act{i}")) for i in (1, 2, 3)] == [nn.ReLU, nn.Tanh, nn.Sigmoid]
    assert compose(["model.hidden=[8,8]", "model.activation=[relu,tanh]"]).model.activation == "relu,tanh"
    every = model_of("model.hidden=[8,8]", "model.activation=tanh")
    assert {type(getattr(every.layers, f"act{i}")) for i in (1, 2)} == {nn.Tanh}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["model.hidden=[8,8]", "model.activation=[relu,tanh,relu]"],
            "give one activation or 2 (one per hidden layer)",
        ),
        (["model.activation=[relu,tann]"], "'tann' is not valid; did you mean 'tanh'?"),
        (["model.activation=Relu"], "'Relu' is not valid; did you mean 'relu'?"),
        (["model=linear", "model.activation=step"], "no hidden layer"),
    ],
)
def test_activation_errors_are_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        compose(overrides)


# ----------------------------------------------------------------------------- norms in CNNs
def test_layer_norm_in_a_cnn_normalizes_each_example_over_channels_and_positions():
    m = model_of("model=cnn", "model.norm=layer", "model.channels=[6]", "model.hidden=[]")
    ln = m.layers.ln1
    nn.init.normal_(ln.weight)
    nn.init.normal_(ln.bias)
    h = torch.randn(3, 6, 8, 8) * 4 + 2
    mean = h.mean(dim=(1, 2, 3), keepdim=True)
    var = h.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
    expected = (h - mean) / torch.sqrt(var + ln.eps) * ln.weight[:, None, None] + ln.bias[:, None, None]
    torch.testing.assert_close(ln(h), expected)


def test_group_norm_in_a_cnn_normalizes_groups_of_channels():
    m = model_of("model=cnn", "model.norm=group", "model.groups=2", "model.channels=[4]", "model.hidden=[]")
    gn = m.layers.gn1
    h = torch.randn(2, 4, 5, 5) * 3 - 1
    g = h.view(2, 2, 2, 5, 5)  # two groups of two channels
    mean, var = g.mean(dim=(2, 3, 4), keepdim=True), g.var(dim=(2, 3, 4), unbiased=False, keepdim=True)
    torch.testing.assert_close(gn(h), ((g - mean) / torch.sqrt(var + gn.eps)).view_as(h))
    with pytest.raises(ConfigError, match="model.groups: 3 does not divide 16 channels"):
        compose(["model=cnn", "model.norm=group", "model.groups=3"])


def test_a_cnn_with_layer_norm_trains_in_a_group_as_alone(runs):
    """GroupNorm has no batch statistics: a vectorized group (vmap) gives each member its single run's loss."""
    from dlrun.train import train
    from tests.conftest import quick

    common = ["model=cnn", "model.norm=layer", "model.channels=[4]", "model.hidden=[8]", "trainer.steps=5"]
    group = train(compose(quick(runs, *common, "trainer.seeds=[0,1]")))
    for seed, member in enumerate(group["members"]):
        alone = train(compose(quick(runs, *common, f"trainer.seed={seed}")))
        own = json.loads((Path(member["run_dir"]) / "summary.json").read_text())
        assert own["metrics"]["test/loss"] == pytest.approx(alone["metrics"]["test/loss"], rel=1e-4)


# ----------------------------------------------------------------------------- init and summary
def test_init_default_has_no_bias_key_and_keeps_pytorchs_biases():
    cfg = compose([])
    assert not hasattr(cfg.init, "bias")  # `dlrun config` no longer shows an init.bias that is not applied
    with pytest.raises(ConfigError, match="init.bias: unknown key"):
        compose(["init.bias=0"])
    assert compose(["init=he_uniform"]).init.bias == 0.0
    m = model_of("model.hidden=[16]")
    assert m.layers.fc1.bias.abs().max() > 0  # PyTorch's uniform biases


def test_summary_says_when_a_size_is_floored_and_its_rows_add_up():
    m = model_of("model=cnn", "model.kernel=[3]", "model.stride=[2]", "model.padding=[0]", "model.channels=[4]")
    rows = summarize(m, (1, 8, 8))["rows"]
    assert rows[0]["formula"] == "M = (8 - 3 + 2*0)/2 + 1 = 3.5, floored to 3"

    class Attention(nn.Module):  # nn.MultiheadAttention keeps in_proj_weight itself and never calls out_proj
        def __init__(self):
            super().__init__()
            self.pos = nn.Parameter(torch.zeros(4, 8))
            self.att = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x):
            h = x.view(-1, 4, 8) + self.pos
            return self.att(h, h, h)[0].flatten(1)

    info = summarize(Attention(), (32,))
    assert sum(r["params"] for r in info["rows"]) == info["params"] == 4 * 8 + 3 * 8 * 8 + 3 * 8 + 8 * 8 + 8
    assert any(r["output"] == "(not called)" and r["layer"] == "att.out_proj" for r in info["rows"])


# ----------------------------------------------------------------------------- fixes from the tour
def test_a_claim_run_with_overrides_is_reported_apart(tmp_path):
    out, runs = tmp_path / "reports", tmp_path / "runs"
    result = dlrun(
        "experiment", "run", "perceptron_rule", "trainer.epochs=2", "--seeds", "0", "--out", str(out),
        "--runs-dir", str(runs),
    )  # fmt: skip
    assert "with trainer.epochs=2: the claim above is stated for its own settings" in result.stdout
    assert (out / "perceptron_rule+trainer.epochs=2" / "results.json").is_file()
    assert not (out / "perceptron_rule").exists()


# ----------------------------------------------------------------------------- an RNN whose cell is an MLP
def test_an_mlp_cell_computes_h_t_from_x_t_and_h_t_minus_1():
    """h_t = tanh(W2 tanh(W1 [x_t, h_{t-1}] + b1) + b2), from h_0 = 0; backwards the same on the reversed steps."""
    from dlrun.models.rnn import MLPRecurrence

    torch.manual_seed(0)
    rec = MLPRecurrence(3, 4, bidirectional=True, cell_hidden=(5,))
    seq = torch.randn(2, 6, 3)
    out, finals = rec(seq)
    assert out.shape == (2, 6, 8) and finals.shape == (2, 2, 4)
    for d, steps in ((0, range(6)), (1, reversed(range(6)))):
        w1, w2 = rec.cells[d][0], rec.cells[d][2]
        h = torch.zeros(2, 4)
        for t in steps:
            h = torch.tanh(w2(torch.tanh(w1(torch.cat([seq[:, t], h], 1)))))
            torch.testing.assert_close(out[:, t, 4 * d : 4 * d + 4], h)
        torch.testing.assert_close(finals[d], h)


def test_an_rnn_with_an_mlp_cell_trains_and_its_gradients_check(runs):
    from dlrun.gradcheck import check_config

    report = check_config(compose(["model=rnn", "model.cell=mlp", "model.hidden_size=4", "model.cell_hidden=[6]",
                                   "model.layers=2"]), batch=3, coords=2)  # fmt: skip
    assert report["verdict"] in ("good", "acceptable") and report["wrong"] == []


# ----------------------------------------------------------------------------- soft labels
def write_npz(path, x, y):
    import numpy as np

    np.savez(path, x=x, y=y)
    return path


def test_one_hot_soft_labels_train_exactly_as_hard_labels(tmp_path, runs):
    """Cross-entropy against a distribution, -sum_k p_k log softmax(z)_k, is the usual loss for one-hot p."""
    import numpy as np

    from dlrun.train import train
    from tests.conftest import quick

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    labels = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0).astype(int)  # 3 classes
    hard = write_npz(tmp_path / "hard.npz", x, labels)
    soft = write_npz(tmp_path / "soft.npz", x, np.eye(3)[labels])
    common = ["data=files", "data.task=classification", "trainer.epochs=3", "model.hidden=[8]"]
    a = train(compose(quick(runs, *common, f"data.path={hard}")))
    b = train(compose(quick(runs, *common, f"data.path={soft}")))
    for key in ("test/loss", "test/acc", "train_final/loss"):
        assert b["metrics"][key] == pytest.approx(a["metrics"][key], rel=1e-5), key


def test_soft_labels_loss_is_cross_entropy_against_the_distribution(tmp_path):
    import numpy as np

    from dlrun.data import build as build_data
    from dlrun.losses import build as build_loss

    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(4), size=60)
    data = build_data(compose(["data=files", f"data.path={write_npz(tmp_path / 's.npz', rng.normal(size=(60, 2)), p)}",
                               "data.task=classification"]).data)  # fmt: skip
    assert data.task.soft_labels and data.task.n_classes == 4 and data.train.y.shape[1] == 4
    name, fn = build_loss(compose([]).loss, data.task)
    z = torch.randn(len(data.train), 4)
    expected = -(data.train.y * torch.log_softmax(z, -1)).sum(-1).mean()
    assert name == "cross_entropy"
    torch.testing.assert_close(fn(z, data.train.y), expected)


def test_soft_labels_must_be_distributions(tmp_path):
    import numpy as np

    from dlrun.data import build as build_data

    p = np.full((30, 3), 0.3)
    with pytest.raises(ConfigError, match=r"row 0 \(counting from 0\) holds .* summing to 0.9; soft labels are"):
        build_data(compose(["data=files", f"data.path={write_npz(tmp_path / 'b.npz', np.zeros((30, 2)), p)}",
                            "data.task=classification"]).data)  # fmt: skip
    auto = build_data(compose(["data=files", f"data.path={tmp_path / 'b.npz'}"]).data)
    assert auto.task.kind == "regression" and auto.task.n_targets == 3  # a 2-D y is soft labels only when asked


# ----------------------------------------------------------------------------- optimizer trajectories
def test_sgd_on_a_quadratic_bowl_shrinks_each_coordinate_geometrically():
    """f = x1^2 + 2 x2^2: x <- x - lr grad f, so x1 <- (1 - 2 lr) x1 and x2 <- (1 - 4 lr) x2 (d2l's example)."""
    from dlrun.viz.trajectory import descend

    sgd, adam = descend("x1**2 + 2*x2**2", [-5.0, -2.0], ["sgd", "adam"], 0.1, 20)
    t = np.arange(21)
    np.testing.assert_allclose(sgd.points[:, 0], -5.0 * 0.8**t, rtol=1e-12)
    np.testing.assert_allclose(sgd.points[:, 1], -2.0 * 0.6**t, rtol=1e-12)
    # Adam's first step moves each coordinate by lr (the bias-corrected m / sqrt(v) is the gradient's sign)
    np.testing.assert_allclose(adam.points[1], [-4.9, -1.9], rtol=1e-6)


def test_trajectory_command_draws_the_paths(tmp_path):
    out = tmp_path / "t.png"
    result = dlrun("viz", "trajectory", "--expr", "x1**2 + 2*x2**2", "--at", "-5,-2", "--optim", "sgd,momentum",
                   "--steps", "5", "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "sgd: f = 33 at the start -> " in result.stdout and out.read_bytes()[:4] == b"\x89PNG"
    bad = dlrun("viz", "trajectory", "--expr", "log(x1) + x2", "--at", "1,1", "--optim", "sgd", "--lr", "10",
                "--steps", "3", "--out", str(out))  # fmt: skip
    assert bad.returncode == 0 and "left the surface's domain or diverged" in bad.stdout


def test_activation_derivatives_match_their_formulas():
    """sigmoid' = s (1 - s) (at most 1/4, at 0), tanh' = 1 - tanh^2, relu' = [z > 0]; step' = 0."""
    from dlrun.viz.functions import curves

    data = curves(["sigmoid", "tanh", "relu", "step"], -4, 4, 81)
    z, s, ds = data["sigmoid"]
    np.testing.assert_allclose(ds, s * (1 - s), atol=1e-12)
    assert ds.max() == pytest.approx(0.25)
    z, t, dt = data["tanh"]
    np.testing.assert_allclose(dt, 1 - t**2, atol=1e-12)
    z, _, dr = data["relu"]
    np.testing.assert_array_equal(dr, (z > 0).astype(float))
    assert not data["step"][2].any()
    result = dlrun("viz", "functions", "--names", "relu,tahn")
    assert result.returncode == 2 and "did you mean 'tanh'?" in result.stderr


# ----------------------------------------------------------------------------- the Transformer encoder
def test_without_positions_a_transformer_ignores_the_order_of_its_tokens():
    """Self-attention is permutation-equivariant and the mean readout invariant: with positions=none, shuffling
    the time steps leaves the output unchanged; with learned positions it does not."""
    x = torch.randn(3, 2, 12)  # (B, C, L): 12 tokens of 2 features
    perm = torch.randperm(12)
    blind = model_of("model=transformer", "model.positions=none", shape=(2, 12)).eval()
    torch.testing.assert_close(blind(x[:, :, perm]), blind(x), atol=1e-5, rtol=1e-5)
    seeing = model_of("model=transformer", shape=(2, 12)).eval()
    assert not torch.allclose(seeing(x[:, :, perm]), seeing(x), atol=1e-4)


def test_transformer_parameter_count_by_hand():
    """Per layer: attention 4 d^2 + 4 d (Q, K, V and the output projection), feed-forward 2 d ff + ff + d, two
    layer norms 4 d; plus the token embedding, the positions and the head."""
    d, ff, layers, steps, features, classes = 16, 24, 3, 40, 1, 10
    m = model_of("model=transformer", f"model.d_model={d}", f"model.ff={ff}", f"model.layers={layers}",
                 shape=(features, steps), out=classes)  # fmt: skip
    per_layer = (4 * d * d + 4 * d) + (2 * d * ff + ff + d) + 4 * d
    expected = (features * d + d) + steps * d + layers * per_layer + (d * classes + classes)
    assert sum(p.numel() for p in m.parameters()) == expected
    cls = model_of("model=transformer", f"model.d_model={d}", f"model.ff={ff}", f"model.layers={layers}",
                   "model.readout=cls", "model.positions=sinusoidal", shape=(features, steps), out=classes)  # fmt: skip
    assert sum(p.numel() for p in cls.parameters()) == expected - steps * d + d  # fixed sinusoids, one class token


# ----------------------------------------------------------------------------- the autoencoder
def test_inputs_as_targets_make_a_reconstruction_task():
    from dlrun.data import build as build_data

    data = build_data(compose(["model=autoencoder"]).data)
    assert data.task.kind == "regression" and data.task.n_targets == 64
    torch.testing.assert_close(data.test.y, data.test.x.flatten(1))
    assert compose(["model=autoencoder", "data=mnist1d"]).data.targets == "inputs"  # kept when the data changes


def test_a_linear_autoencoder_reaches_the_pca_error(runs):
    """With no hidden layer (a linear encoder and decoder) and a code of k, the best reconstruction is the
    projection on the top k principal components (Baldi and Hornik 1989): the trained error nears PCA's."""
    from dlrun.data import build as build_data
    from dlrun.train import train
    from tests.conftest import quick

    common = ["model=autoencoder", "data=wine", "model.hidden=[]", "model.code=3"]  # no hidden layer: linear
    s = train(compose(quick(runs, *common, "trainer.epochs=300", "optim.lr=0.01", "trainer.batch_size=64")))
    data = build_data(compose(common).data)
    x_train, x_test = data.train.x.double().numpy(), data.test.x.double().numpy()
    mean = x_train.mean(0)
    _, _, vt = np.linalg.svd(x_train - mean, full_matrices=False)
    proj = (x_test - mean) @ vt[:3].T @ vt[:3] + mean
    pca = ((proj - x_test) ** 2).mean()
    assert pca * 0.9 <= s["metrics"]["test/mse"] <= pca * 1.1, (s["metrics"]["test/mse"], pca)


def test_reconstructions_picture(runs):
    from dlrun.train import train
    from tests.conftest import quick

    s = train(compose(quick(runs, "model=autoencoder", "trainer.epochs=1")))
    result = dlrun("viz", "reconstructions", s["run_dir"], "--examples", "4")
    assert result.returncode == 0, result.stderr
    assert "4 test examples: reconstruction mse" in result.stdout
    assert (Path(s["run_dir"]) / "viz" / "reconstructions.png").is_file()
    classifier = train(compose(quick(runs, "trainer.epochs=1")))
    bad = dlrun("viz", "reconstructions", classifier["run_dir"])
    assert bad.returncode == 2 and "data.targets=inputs" in bad.stderr
    with pytest.raises(ConfigError, match="model=autoencoder reconstructs its input"):
        from dlrun.train import build as build_setup

        build_setup(compose(quick(runs, "model=autoencoder", "data.targets=labels")))


# ----------------------------------------------------------------------------- computation graphs
def test_the_graph_of_a_formula_shares_its_variables():
    """f = x1 x2 + sin(x1): Add <- (Mul <- x1, x2), (Sin <- x1); x1 is one leaf with two uses."""
    from dlrun.viz.graph import expr_graph

    g, value = expr_graph("x1*x2 + sin(x1)", [1.0, 2.0])
    assert value == pytest.approx(2 + np.sin(1))
    assert sorted(g.labels.values()) == ["Add", "Mul", "Sin", "x1", "x2"]
    by_label = {label: node for node, label in g.labels.items()}
    assert sum(1 for a, _ in g.edges if a == by_label["x1"]) == 2 and len(g.edges) == 5
    assert g.depth[by_label["Add"]] == 0 and g.depth[by_label["x1"]] == 2


def test_the_graph_of_a_model_reaches_every_parameter_and_the_input(tmp_path):
    from dlrun.viz.graph import model_graph

    g, _ = model_graph(compose(["model.hidden=[4]", "data=iris"]))
    leaves = set(g.labels.values())
    assert {"fc1.weight", "fc1.bias", "out.weight", "out.bias", "input x"} <= leaves
    result = dlrun("viz", "graph", "--expr", "x1*x2", "--at", "1,2", "--out", str(tmp_path / "g.png"))
    assert result.returncode == 0 and "3 nodes, 2 edges" in result.stdout
    big = dlrun("viz", "graph", "model=resnet18", "--out", str(tmp_path / "g.png"))
    assert big.returncode == 2 and "more than 80 nodes" in big.stderr
