"""dlrun viz: every command on a small trained run writes a PNG and the same image to TensorBoard; the
formulas behind the pictures are checked against hand computations and autograd.

Runs are trained once per module: a digits MLP, a digits LeNet-5, logistic regression on digits
(inputs scaled to [0, 1] with data.standardize=unit) and an XOR MLP.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.image import imread
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from typer.testing import CliRunner

from dlrun import models
from dlrun.cli import app
from dlrun.config import compose
from dlrun.data import build as build_data
from dlrun.errors import ConfigError
from dlrun.options import MLPConfig
from dlrun.train import train
from dlrun.viz import activations as acts
from dlrun.viz import actmax, adversarial, boundary, confusion, curves, landscape, saliency
from dlrun.viz.load import load_run, predict
from dlrun.viz.picture import png_size
from tests.conftest import quick

runner = CliRunner()
UNIT = "data.standardize=unit"  # digits pixels 0..16 -> 0..1


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("viz-runs")


def _train(runs_dir, *overrides) -> Path:
    summary = train(compose(quick(runs_dir, "trainer.threads=1", *overrides)))
    assert summary["status"] == "completed"
    return Path(summary["run_dir"])


@pytest.fixture(scope="module")
def mlp_run(runs_dir):
    return _train(runs_dir, "name=mlp", UNIT, "model.hidden=[64]", "trainer.epochs=30")


@pytest.fixture(scope="module")
def lenet_run(runs_dir):
    return _train(runs_dir, "name=lenet", "model=lenet5", UNIT, "trainer.epochs=4")


@pytest.fixture(scope="module")
def linear_run(runs_dir):
    return _train(runs_dir, "name=linear", "model=linear", UNIT, "trainer.epochs=20")


@pytest.fixture(scope="module")
def xor_run(runs_dir):
    return _train(
        runs_dir, "name=xor", "data=xor", "model.hidden=[8]", "model.activation=tanh", "optim.lr=0.01",
        "trainer.epochs=20",
    )  # fmt: skip


def viz(*args: str):
    return runner.invoke(app, ["viz", *map(str, args)])


def check_picture(result, path, run_dir, tag: str) -> tuple[int, int]:
    """The command succeeded, wrote a non-empty PNG at `path`, and logged the same image under `tag`."""
    assert result.exit_code == 0, result.output
    assert str(path) in result.output
    data = path.read_bytes()
    assert len(data) > 2000 and data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) < 400_000
    width, height = png_size(data)
    assert imread(path).shape[:2] == (height, width)
    assert 400 <= width <= 2500 and 200 <= height <= 1600  # readable, not a poster
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0}).Reload()
    assert tag in events.Tags()["images"]
    image = events.Images(tag)[-1]
    assert (image.width, image.height) == (width, height)
    assert image.encoded_image_string == data  # the same picture, byte for byte
    return width, height


def one_line_error(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for word in words:
        assert word in lines[0]


# ----------------------------------------------------------------------------- data scaled to [0, 1]
def test_unit_standardization_divides_digits_by_16():
    ds = build_data(compose([UNIT]).data)
    assert ds.task.value_range == (0.0, 1.0)
    assert float(ds.stats["x_mean"]) == 0.0 and float(ds.stats["x_std"]) == 16.0
    for split in (ds.train, ds.val, ds.test):  # raw pixels are the integers 0..16
        raw = split.x * 16
        assert torch.allclose(raw, raw.round(), atol=1e-4) and raw.min() >= 0 and raw.max() <= 16


# ----------------------------------------------------------------------------- loading a run
def test_bad_run_directories_are_one_line_errors(tmp_path, mlp_run):
    one_line_error(viz("confusion", tmp_path / "nowhere"), "nowhere", "no such directory")
    one_line_error(viz("confusion", tmp_path), str(tmp_path), "no config.yaml")
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "config.yaml").write_text((mlp_run / "config.yaml").read_text())
    one_line_error(viz("confusion", copy), str(copy), "checkpoints/last.pt")
    one_line_error(viz("confusion", mlp_run, "--weights", "bset"), "--weights", "best")


def test_load_run_restores_the_trained_weights(mlp_run):
    run = load_run(mlp_run)
    assert not run.model.training
    summary = json.loads((mlp_run / "summary.json").read_text())
    test = run.data.test
    acc = (predict(run.model, test.x)[0] == test.y).float().mean().item()
    assert acc == pytest.approx(summary["metrics"]["test/acc"], abs=1e-6)
    assert run.step == summary["step"]
    init = load_run(mlp_run, "init")
    assert init.step == 0
    assert not torch.equal(init.model.layers.fc1.weight, run.model.layers.fc1.weight)


def test_layers_lists_names_and_output_shapes(lenet_run):
    result = viz("layers", lenet_run)
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.startswith("│")}
    assert "(6, 8, 8)" in rows["conv1"] and "(6, 4, 4)" in rows["pool1"] and "(10,)" in rows["out"]


# ----------------------------------------------------------------------------- activation maximization
def test_actmax_every_digit_class_reaches_p90(mlp_run):
    run = load_run(mlp_run)
    result = actmax.maximize(
        run.model, run.task.input_shape, run.task.value_range, actmax.Target("class", None), run.task.n_classes
    )
    assert result.indices == list(range(10)) and result.x.shape == (10, 3, 1, 8, 8)
    assert result.x.min() >= 0.0 and result.x.max() <= 1.0  # inside the data's valid range
    for c in range(10):
        assert (result.probs[c, :, c] >= 0.9).all(), (c, result.probs[c, :, c])
    # the reported probabilities are the model's on the returned inputs
    x = torch.tensor(result.x.reshape(30, 1, 8, 8))
    assert np.allclose(predict(run.model, x)[1].numpy(), result.probs.reshape(30, 10), atol=1e-5)


def test_actmax_command(mlp_run, lenet_run):
    result = viz("actmax", mlp_run, "--target", "class:3", "--starts", "2", "--steps", "50")
    check_picture(result, mlp_run / "viz" / "actmax.png", mlp_run, "viz/actmax")
    result = viz("actmax", lenet_run, "--target", "conv1", "--steps", "30", "--jitter", "1", "--blur", "0.5")
    check_picture(result, lenet_run / "viz" / "actmax-conv1.png", lenet_run, "viz/actmax-conv1")
    one_line_error(viz("actmax", lenet_run, "--target", "conv9"), "conv9", "conv1")
    one_line_error(viz("actmax", lenet_run, "--target", "conv1:6"), "conv1:6", "6 channels")


def test_actmax_raises_a_channel_and_a_unit(lenet_run):
    run = load_run(lenet_run)
    shape, value_range = run.task.input_shape, run.task.value_range
    for target in (actmax.Target("conv2", 5), actmax.Target("fc1", 7)):
        result = actmax.maximize(run.model, shape, value_range, target, 10, starts=2, steps=60, tv=0.01, jitter=1)
        layer = dict(run.model.layers.named_children())[target.layer]
        seen = {}
        handle = layer.register_forward_hook(lambda m, i, o, seen=seen: seen.update(out=o))

        def value(x, k=target.index, seen=seen):  # channel k's mean over positions, or unit k
            run.model(x)
            v = seen["out"][:, k]
            return v.flatten(1).mean(1) if v.dim() > 1 else v

        before = value(torch.rand(64, *shape)).max().item()  # the best of 64 random inputs in the valid range
        after = value(torch.tensor(result.x[0]))
        handle.remove()
        assert torch.allclose(after, torch.tensor(result.score[0]), atol=1e-4)
        assert after.min().item() > before


def test_actmax_signals_stay_in_range():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 4, 5, padding=2), nn.ReLU(), nn.Flatten(), nn.Linear(80, 3)).eval()
    result = actmax.maximize(model, (1, 20), (-2.0, 3.0), actmax.Target("class", 1), 3, starts=2, steps=100)
    assert result.x.shape == (1, 2, 1, 20)
    assert result.x.min() >= -2.0 and result.x.max() <= 3.0
    start = torch.rand(256, 1, 20) * 5 - 2
    assert result.score.min() > model(start)[:, 1].max().item()
    fig = actmax.plot_actmax(result, type("T", (), {"class_names": ()})())
    assert len(fig.axes) == 1  # one panel per target, the starts as curves


def test_blur_and_total_variation_by_hand():
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 4] = 1.0
    sigma = 1.0
    t = torch.arange(-2, 3, dtype=torch.float32)
    k = torch.exp(-0.5 * t**2 / sigma**2)
    k = k / k.sum()
    expected = torch.zeros(9, 9)
    expected[2:7, 2:7] = k[:, None] * k[None, :]  # a blurred point is the 2-D Gaussian kernel
    assert torch.allclose(actmax.gaussian_blur(x, sigma)[0, 0], expected, atol=1e-6)
    y = torch.tensor([[[0.0, 1.0, 3.0], [2.0, 2.0, 0.0]]]).unsqueeze(0)  # (1, 1, 2, 3)
    # horizontal |1-0|+|3-1|+|2-2|+|0-2| = 5, vertical |2-0|+|2-1|+|0-3| = 6
    assert actmax.total_variation(y).item() == pytest.approx(11.0)


# ----------------------------------------------------------------------------- filters, saliency
def test_filters(lenet_run, mlp_run):
    result = viz("filters", lenet_run)
    check_picture(result, lenet_run / "viz" / "filters.png", lenet_run, "viz/filters")
    from dlrun.viz.filters import kernels

    run = load_run(lenet_run)
    name, w = kernels(run.model)
    assert name == "conv1" and np.array_equal(w, run.model.layers.conv1.weight.detach().numpy())
    one_line_error(viz("filters", mlp_run), "model=mlp", "no convolution layer")


def test_saliency_of_a_linear_model_is_its_weights(linear_run):
    run = load_run(linear_run)
    x, y = run.data.test.x[:5], run.data.test.y[:5]
    result = saliency.saliency(run.model, x, y)
    w = run.model.layers.out.weight.detach()  # S = W x + b, so dS_c/dx = W_c
    pred = (x.flatten(1) @ w.T).argmax(-1)
    assert np.array_equal(result.classes, pred.numpy())
    assert np.allclose(result.saliency.reshape(5, -1), w[pred].abs().numpy(), atol=1e-6)


def test_saliency_command(lenet_run):
    result = viz("saliency", lenet_run, "--examples", "4")
    check_picture(result, lenet_run / "viz" / "saliency.png", lenet_run, "viz/saliency")


# ----------------------------------------------------------------------------- adversarial examples
def test_fgsm_is_the_signed_gradient_step_of_softmax_regression(linear_run):
    run = load_run(linear_run)
    x, y = run.data.test.x[:50], run.data.test.y[:50]
    w, b = run.model.layers.out.weight.detach(), run.model.layers.out.bias.detach()
    p = F.softmax(x.flatten(1) @ w.T + b, -1)
    grad = (p - F.one_hot(y, 10).float()) @ w  # d CE / dx for softmax regression, by hand
    expected = (x.flatten(1) + 0.1 * grad.sign()).clamp(0, 1).reshape(x.shape)
    assert torch.allclose(adversarial.fgsm(run.model, x, y, 0.1, (0.0, 1.0)), expected, atol=1e-6)


def test_fgsm_at_quarter_range_breaks_logistic_regression(linear_run):
    run = load_run(linear_run)
    test = run.data.test
    adv = adversarial.fgsm(run.model, test.x, test.y, 0.25, run.task.value_range)
    assert (adv - test.x).abs().max() <= 0.25 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    error = (predict(run.model, adv)[0] != test.y).float().mean().item()
    assert error >= 0.9, error


def test_pgd_is_at_least_as_strong_as_fgsm_at_every_eps(linear_run):
    run = load_run(linear_run)
    test = run.data.test
    eps = np.linspace(0, 0.25, 6)
    fgsm_acc = adversarial.accuracy_curve("fgsm", run.model, test.x, test.y, eps, run.task.value_range)
    pgd_acc = adversarial.accuracy_curve("pgd", run.model, test.x, test.y, eps, run.task.value_range)
    assert fgsm_acc[0] == pgd_acc[0] and fgsm_acc[0] > 0.85  # eps = 0: the clean accuracy
    assert (pgd_acc <= fgsm_acc).all(), (pgd_acc, fgsm_acc)
    adv = adversarial.pgd(run.model, test.x, test.y, 0.1, run.task.value_range)
    assert (adv - test.x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1


def test_one_pixel_changes_one_position(lenet_run):
    run = load_run(lenet_run)
    pred = predict(run.model, run.data.test.x)[0]
    right = torch.nonzero(pred == run.data.test.y).flatten()[:4]
    x, y = run.data.test.x[right], run.data.test.y[right]
    adv, success = adversarial.one_pixel(run.model, x, y, run.task.value_range, maxiter=20, popsize=10)
    changed = (adv != x).flatten(1).sum(1)
    assert (changed <= 1).all()
    assert adv.min() >= 0 and adv.max() <= 1
    assert np.array_equal(success, (predict(run.model, adv)[0] != y).numpy())


def test_adversarial_commands(linear_run, lenet_run):
    result = viz("adversarial", linear_run, "--attack", "fgsm", "--eps", "0.25")
    assert "accuracy" in result.output
    png = linear_run / "viz" / "adversarial-fgsm.png"
    check_picture(result, png, linear_run, "viz/adversarial-fgsm")
    result = viz("adversarial", lenet_run, "--attack", "pgd", "--eps", "0.1", "--points", "3", "--steps", "10")
    lines = [line for line in result.output.splitlines() if "accuracy" in line]
    assert lines[0].startswith("fgsm (for comparison): ") and lines[-1].startswith("pgd: ")  # pgd's own line last
    check_picture(result, lenet_run / "viz" / "adversarial-pgd.png", lenet_run, "viz/adversarial-pgd")
    result = viz("adversarial", lenet_run, "--attack", "onepixel", "--attempts", "3", "--examples", "2")
    png = lenet_run / "viz" / "adversarial-onepixel.png"
    check_picture(result, png, lenet_run, "viz/adversarial-onepixel")
    one_line_error(viz("adversarial", lenet_run, "--attack", "fgms"), "fgms", "fgsm")


# ----------------------------------------------------------------------------- loss landscape
def test_filter_normalized_direction():
    params = [torch.randn(5, 3, 2, 2), torch.randn(4, 7), torch.randn(4)]
    d = landscape.filter_normalized_direction(params, torch.Generator().manual_seed(0))
    for p, di in zip(params[:2], d[:2], strict=True):
        assert torch.allclose(di.flatten(1).norm(dim=1), p.flatten(1).norm(dim=1), rtol=1e-5)
        assert not torch.allclose(di, p)
    assert torch.equal(d[2], torch.zeros(4))  # 1-D tensors (biases, norms) do not move


def test_trained_point_is_the_minimum_of_the_2d_landscape(mlp_run):
    run = load_run(mlp_run)
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    train_split = run.data.train
    ls = landscape.loss_landscape(
        run.model, train_split.x, train_split.y, run.setup.loss_fn, run.task, dims=2, points=21
    )
    assert ls.loss.shape == (21, 21)
    assert ls.loss.argmin() == 10 * 21 + 10  # the center
    assert ls.loss.max() > 2 * ls.loss[10, 10]
    for k, v in run.model.state_dict().items():  # theta restored
        assert torch.equal(v, before[k])
    # the center is the trained model's own loss and accuracy on the train split
    z = run.model(train_split.x)
    assert ls.loss[10, 10] == pytest.approx(run.setup.loss_fn(z, train_split.y).item(), rel=1e-5)
    assert ls.metric[10, 10] == pytest.approx((z.argmax(-1) == train_split.y).float().mean().item())


def test_landscape_commands(mlp_run, linear_run):
    result = viz("landscape", mlp_run, "--points", "11")
    png = mlp_run / "viz" / "landscape-2d.png"
    check_picture(result, png, mlp_run, "viz/landscape-2d")
    saved = np.load(png.with_suffix(".npz"))
    assert saved["loss"].shape == (11, 11) and saved["acc"].shape == (11, 11)
    assert np.allclose(saved["alphas"], np.linspace(-1, 1, 11))
    result = viz("landscape", mlp_run, "--dims", "1", "--points", "21", "--compare", linear_run, "--range", "0.5")
    png = mlp_run / "viz" / "landscape-1d.png"
    check_picture(result, png, mlp_run, "viz/landscape-1d")
    saved = np.load(png.with_suffix(".npz"))
    assert saved["loss"].shape == (21,) and saved["loss_2"].shape == (21,)
    assert np.allclose(saved["alphas_2"], np.linspace(-0.5, 0.5, 21))


# ----------------------------------------------------------------------------- boundary, curves, confusion
def test_boundary(xor_run, mlp_run):
    result = viz("boundary", xor_run, "--resolution", "60")
    check_picture(result, xor_run / "viz" / "boundary.png", xor_run, "viz/boundary")
    run = load_run(xor_run)
    grid = boundary.decision_grid(run.model, run.data.train.x, run.data.train.y, resolution=41)
    for cx, cy in ((1, 1), (-1, 1), (1, -1), (-1, -1)):  # the cluster centers: label 1 where x1 x2 < 0
        i, j = np.abs(grid.ys - cy).argmin(), np.abs(grid.xs - cx).argmin()
        assert grid.probs[i, j].argmax() == int(cx * cy < 0)
    one_line_error(viz("boundary", mlp_run), "2-D inputs", "(1, 8, 8)")


def test_curves(mlp_run, linear_run, tmp_path):
    out = tmp_path / "curves.png"
    result = viz("curves", mlp_run, linear_run, "--out", out)
    check_picture(result, out, mlp_run, "viz/curves")
    check_picture(result, out, linear_run, "viz/curves")
    series = curves.read_metrics(mlp_run)
    summary = json.loads((mlp_run / "summary.json").read_text())
    steps, values = series["val/acc"]
    assert len(steps) == 30 and values[-1] == pytest.approx(summary["metrics"]["val/acc"])
    one_line_error(viz("curves", tmp_path), str(tmp_path), "no runs below it")


def test_confusion(mlp_run):
    from sklearn.metrics import confusion_matrix

    run = load_run(mlp_run)
    test = run.data.test
    matrix = confusion.confusion_matrix(run.model, test.x, test.y, 10)
    pred = predict(run.model, test.x)[0]
    assert np.array_equal(matrix, confusion_matrix(test.y.numpy(), pred.numpy(), labels=range(10)))
    result = viz("confusion", mlp_run)
    check_picture(result, mlp_run / "viz" / "confusion.png", mlp_run, "viz/confusion")


def test_calibration_ece_by_hand_and_the_command(mlp_run):
    from dlrun.viz import calibration

    # 4 bins: confidences 0.1 and 0.2 (bin 0), 0.6 (bin 2), 0.9, 1.0 and 0.95 (bin 3)
    conf = np.array([0.1, 0.2, 0.6, 0.9, 1.0, 0.95])
    correct = np.array([0, 1, 1, 1, 1, 0])
    r = calibration.reliability(conf, correct, bins=4)
    assert list(r.count) == [2, 0, 1, 3]
    by_hand = 2 / 6 * abs(0.5 - 0.15) + 1 / 6 * abs(1 - 0.6) + 3 / 6 * abs(2 / 3 - 0.95)
    assert r.ece == pytest.approx(by_hand)
    result = viz("calibration", mlp_run, "--bins", "10")
    check_picture(result, mlp_run / "viz" / "calibration.png", mlp_run, "viz/calibration")
    assert "expected calibration error (test split" in result.stdout


def test_fit_draws_the_model_over_its_input(runs_dir, mlp_run):
    from dlrun.viz import fit

    run_dir = _train(runs_dir, "name=sine", "data=sine", "model.hidden=[16]", "model.activation=tanh")
    run = load_run(run_dir)
    x, y = fit.curve(run.model, -1.0, 1.0, points=7)
    with torch.no_grad():
        expected = run.model(torch.linspace(-1, 1, 7).unsqueeze(1))[:, 0].numpy()
    assert np.allclose(x, np.linspace(-1, 1, 7), atol=1e-6) and np.allclose(y, expected, atol=1e-6)
    result = viz("fit", run_dir)
    check_picture(result, run_dir / "viz" / "fit.png", run_dir, "viz/fit")
    one_line_error(viz("fit", mlp_run), "viz fit draws a regression on one input", "try data=sine")


def test_regions_of_a_hand_made_relu_layer(runs_dir):
    """Three ReLUs whose lines x1 = 0.1, x2 = 0.2 and x1 + x2 = 0.5 cross inside the window cut it into
    1 + 3 + 3 = 7 regions (lines in general position); two axis-aligned ones into 4."""
    from dlrun.viz import regions

    m = models.build(MLPConfig(hidden=[3]), (2,), 1)
    with torch.no_grad():
        m.layers.fc1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        m.layers.fc1.bias.copy_(torch.tensor([-0.1, -0.2, -0.5]))
    r = regions.regions(m, np.array([-1.0, -1.0]), np.array([1.0, 1.0]), resolution=200)
    assert r.count == 7 and r.units == 3 and r.ids.max() == 6
    two = models.build(MLPConfig(hidden=[2]), (2,), 1)
    with torch.no_grad():
        two.layers.fc1.weight.copy_(torch.eye(2))
        two.layers.fc1.bias.zero_()
    assert regions.regions(two, np.array([-1.0, -1.0]), np.array([1.0, 1.0]), resolution=50).count == 4
    deep = _train(runs_dir, "name=deep", "data=moons", "model.hidden=[8,8]", "trainer.epochs=3")
    wide = _train(runs_dir, "name=wide", "data=moons", "model.hidden=[16]", "trainer.epochs=3")
    result = viz("regions", deep, "--compare", str(wide), "--resolution", "100")
    check_picture(result, deep / "viz" / "regions.png", deep, "viz/regions")
    assert result.output.count("linear regions on a 100x100 grid") == 2


# ----------------------------------------------------------------------------- activations and gradients
def test_activation_gradients_match_autograd(mlp_run):
    run = load_run(mlp_run, "init")
    x, y = run.data.train.x[:64], run.data.train.y[:64]
    stats = acts.activation_stats(run.model, x, y, run.setup.loss_fn)
    assert [s.name for s in stats] == ["act1"]
    layers = run.model.layers
    h = layers[:3](x).detach().requires_grad_(True)  # flatten, fc1, act1
    loss = run.setup.loss_fn(layers[3:](h), y)
    (grad,) = torch.autograd.grad(loss, h)
    assert np.allclose(stats[0].activations, h.detach().flatten().numpy())
    assert np.allclose(stats[0].gradients, grad.flatten().numpy(), atol=1e-9)
    assert stats[0].grad_std == pytest.approx(grad.std().item(), rel=1e-5)
    assert all(p.grad is None for p in run.model.parameters())  # parameter gradients untouched


def test_activations_command(lenet_run):
    result = viz("activations", lenet_run, "--weights", "init", "--batch", "64")
    assert "fc_act2" in result.output and math.isfinite(float(result.output.split("gradient std")[1].split()[0]))
    check_picture(result, lenet_run / "viz" / "activations.png", lenet_run, "viz/activations")
    one_line_error(viz("activations", lenet_run, "--layers", "fc9"), "fc9")


def test_regression_runs_are_refused_where_classes_are_needed(tmp_path):
    with pytest.raises(ConfigError, match="no classes"):
        actmax.target_indices(nn.Linear(3, 1), actmax.Target("class", None), (3,), 0, 16)


# ----------------------------------------------------------------------------- layout of the pictures
def drawn(fig):
    """The figure laid out and drawn by Agg (as the PNG is); returns the renderer for window extents."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def overlapping_tick_labels(fig) -> list[tuple[str, str]]:
    """Pairs of neighbouring visible tick labels whose boxes overlap, on every axis of every Axes."""
    renderer = drawn(fig)
    pairs = []
    for ax in fig.axes:
        for axis, k in ((ax.xaxis, 0), (ax.yaxis, 1)):
            low, high = sorted(axis.get_view_interval())
            labels = [  # the drawn ones: the locator's ticks beyond the limits are not
                t
                for t in axis.get_ticklabels()
                if t.get_visible() and t.get_text() and low <= t.get_position()[k] <= high
            ]
            boxes = sorted(((t.get_window_extent(renderer), t.get_text()) for t in labels), key=lambda b: b[0].p0[k])
            for (a, a_text), (b, b_text) in zip(boxes, boxes[1:], strict=False):
                if a.overlaps(b):
                    pairs.append((a_text, b_text))
    return pairs


def test_actmax_title_of_one_class_fits_its_narrow_figure():
    """--target class:3: one column of images, a figure 4 inches wide; the title is wrapped, not cut."""
    rng = np.random.default_rng(0)
    result = actmax.ActMaxResult(
        target=actmax.Target("class", 3), indices=[3], x=rng.random((1, 3, 1, 8, 8)), score=np.ones((1, 3)),
        probs=np.full((1, 3, 10), 0.1), value_range=(0.0, 1.0),
    )  # fmt: skip
    fig = actmax.plot_actmax(result, type("T", (), {"class_names": ()})())
    renderer = drawn(fig)
    title = fig._suptitle
    assert title.get_text().replace("\n", " ") == "Activation maximization: one input per class, 3 random starts"
    box, page = title.get_window_extent(renderer), fig.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1
    for ax in fig.axes:  # the wrapped title's lines do not run into the panels
        assert not box.overlaps(ax.get_tightbbox(renderer))


def test_compared_1d_landscapes_share_one_log_loss_axis():
    alphas = np.linspace(-1, 1, 21)
    panels = [
        landscape.Landscape(alphas, np.array([]), 0.09 + 2 * alphas**2, 1 - alphas**2 / 2, "acc", "deep"),
        landscape.Landscape(alphas, np.array([]), 0.65 + 0.3 * alphas**2, 0.9 - alphas**2 / 9, "acc", "linear"),
    ]
    fig = landscape.plot_landscape(panels)
    drawn(fig)
    loss_axes = fig.axes[:2]  # the panels; their twins (the metric) come after
    assert [ax.get_yscale() for ax in loss_axes] == ["log", "log"]
    low, high = loss_axes[0].get_ylim()
    assert loss_axes[1].get_ylim() == (low, high)
    assert low <= 0.09 and high >= 2.09  # both curves inside
    twins = fig.axes[2:]
    assert len(twins) == 2 and twins[0].get_ylim() == twins[1].get_ylim()


def test_2d_landscape_tick_labels_do_not_overlap():
    alphas = np.linspace(-1, 1, 11)
    loss = 0.09 + np.add.outer(alphas**2, 2 * alphas**2)
    for n in (1, 2):  # alone, and beside a compared run
        panels = [landscape.Landscape(alphas, alphas, loss * (k + 1), loss * 0, "acc", f"run{k}") for k in range(n)]
        assert overlapping_tick_labels(landscape.plot_landscape(panels)) == []


def test_gradient_histogram_tick_labels_do_not_overlap():
    """Gradients at initialization are ~1e-4: long labels like -0.0004, nine to a panel, ran together."""
    rng = np.random.default_rng(0)
    stats = [
        acts.LayerStats(name, rng.random(5000) * 0.6, rng.uniform(-std, std, 5000) * 3**0.5, 0.1, std)
        for name, std in (("act1", 6e-6), ("act2", 2e-5), ("fc_act1", 8e-5), ("fc_act2", 2.4e-4))
    ]  # uniform: the last layer's gradients fill -0.0004..0.0004, as at LeNet-5's initialization
    assert overlapping_tick_labels(acts.plot_activations(stats)) == []
