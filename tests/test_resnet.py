"""model=resnet: the CIFAR family of He et al. 2016 (parameter counts, shortcuts, shapes, presets, training)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dlrun.config import compose
from dlrun.data import Task
from dlrun.errors import ConfigError
from dlrun.models import check_fit, count_parameters
from dlrun.models.resnet import ShortcutA, build_resnet
from dlrun.models.summary import summarize
from dlrun.train.loop import train

CIFAR = (3, 32, 32)
DIGITS = Task(kind="multiclass", input_shape=(1, 8, 8), input_kind="image", n_classes=10)
SIGNAL = Task(kind="multiclass", input_shape=(1, 40), input_kind="signal", n_classes=10)
TABULAR = Task(kind="multiclass", input_shape=(4,), n_classes=3)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small models run fastest on one CPU thread (as trainer.threads=1 does); restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def resnet(*overrides: str, input_shape=CIFAR, out_features: int = 10):
    return build_resnet(compose(list(overrides)).model, input_shape, out_features)


def cifar_parameters(n: int) -> int:
    """ResNet-(6n+2) on 3x32x32 with widths 16/32/64 and 10 classes, counted by hand.

    conv3x3 C_in -> C_out without bias: 9 C_in C_out; BatchNorm(C): 2C (gamma, beta); shortcuts: 0.
      stem:     9*3*16 + 2*16                                            =    464
      stage1:   n blocks 16->16, each 2*(9*16*16) + 2*(2*16)             =  4,672 n
      stage2:   first 9*16*32 + 9*32*32 + 4*32 = 13,952; n-1 more of 2*(9*32*32) + 4*32 = 18,560
      stage3:   first 9*32*64 + 9*64*64 + 4*64 = 55,552; n-1 more of 2*(9*64*64) + 4*64 = 73,984
      out:      64*10 + 10                                               =    650
    total = 464 + 650 + 4,672 n + 13,952 + 18,560 (n-1) + 55,552 + 73,984 (n-1) = 97,216 n - 21,926
    (n = 3: 269,722; n = 9: 853,018).
    """
    return 97_216 * n - 21_926


@pytest.mark.parametrize(
    ("preset", "n", "anchor", "tolerance"),
    [
        ("resnet20", 3, 0.27e6, 0.01),
        ("resnet32", 5, 0.46e6, 0.02),
        ("resnet44", 7, 0.66e6, 0.02),
        ("resnet56", 9, 0.85e6, 0.01),
        ("resnet110", 18, 1.7e6, 0.02),
    ],
)
def test_parameter_counts_match_the_paper(preset, n, anchor, tolerance):
    cfg = compose([f"model={preset}"]).model
    assert cfg.depth == 6 * n + 2 and cfg.skip is True
    count = count_parameters(build_resnet(cfg, CIFAR, 10))
    assert count == cifar_parameters(n)
    assert abs(count - anchor) <= tolerance * anchor, (preset, count)


def test_exact_counts_of_resnet20_and_resnet56():
    assert count_parameters(resnet("model=resnet20")) == 269_722
    assert count_parameters(resnet("model=resnet56")) == 853_018


@pytest.mark.parametrize(("plain", "residual"), [("plain20", "resnet20"), ("plain56", "resnet56")])
def test_plain_networks_have_exactly_as_many_parameters(plain, residual):
    p, r = resnet(f"model={plain}"), resnet(f"model={residual}")
    assert compose([f"model={plain}"]).model.skip is False
    assert count_parameters(p) == count_parameters(r)
    assert [n for n, _ in p.named_parameters()] == [n for n, _ in r.named_parameters()]
    assert not any(isinstance(m, ShortcutA) for m in p.modules())
    assert any(isinstance(m, ShortcutA) for m in r.modules())


@pytest.mark.parametrize("input_shape", [CIFAR, (1, 8, 8), (1, 40)], ids=["cifar", "digits", "signal"])
@pytest.mark.parametrize("skip", ["true", "false"])
def test_output_shape(input_shape, skip):
    model = resnet("model=resnet", f"model.skip={skip}", input_shape=input_shape)
    assert model(torch.randn(5, *input_shape)).shape == (5, 10)
    assert isinstance(model.stem.conv, torch.nn.Conv2d if len(input_shape) == 3 else torch.nn.Conv1d)


def test_readable_layer_names_and_no_conv_bias():
    model = resnet("model=resnet20")
    names = dict(model.named_modules())
    for name in ("stem.conv", "stem.bn", "stage1.block0.conv1", "stage2.block0.shortcut", "stage3.block2.conv2"):
        assert name in names, name
    assert "stage3.block3" not in names  # n = 3 blocks per stage
    assert isinstance(names["pool"], torch.nn.AdaptiveAvgPool2d) and names["out"].in_features == 64
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 19 and all(c.bias is None for c in convs)  # 19 convs + 1 Linear = depth 20
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)


def randomize_batchnorm(model: torch.nn.Module) -> None:
    """Non-trivial BN statistics and affine parameters, so F(x) is not just a normalized conv."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g))
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.randn(c, generator=g))
                m.bias.copy_(torch.randn(c, generator=g))


def block_by_hand(block, x):
    """F(x) = bn2(conv2(relu(bn1(conv1(x))))), from the submodules."""
    return block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x)))))


@torch.no_grad()
def test_residual_block_output_is_relu_of_f_plus_shortcut():
    model = resnet("model=resnet20").eval()
    randomize_batchnorm(model)
    x = torch.randn(2, 16, 32, 32)
    seen = {}
    handle = model.stage2.block0.register_forward_hook(lambda m, i, o: seen.update(x=i[0], out=o))
    model(torch.randn(2, *CIFAR))
    handle.remove()
    # the downsampling block inside the network: ReLU(F(x) + [x[::2, ::2], zeros])
    xin = seen["x"]
    shortcut = torch.cat([xin[..., ::2, ::2], torch.zeros(2, 16, 16, 16)], dim=1)
    expected = torch.relu(block_by_hand(model.stage2.block0, xin) + shortcut)
    assert seen["out"].shape == (2, 32, 16, 16)
    torch.testing.assert_close(seen["out"], expected)
    # an identity block: ReLU(F(x) + x), which differs from ReLU(F(x))
    block = model.stage1.block1
    torch.testing.assert_close(block(x), torch.relu(block_by_hand(block, x) + x))
    assert not torch.allclose(block(x), torch.relu(block_by_hand(block, x)))


@torch.no_grad()
def test_plain_block_output_is_relu_of_f():
    model = resnet("model=plain20").eval()
    randomize_batchnorm(model)
    x = torch.randn(2, 16, 32, 32)
    for block in (model.stage1.block1, model.stage2.block0):
        torch.testing.assert_close(block(x), torch.relu(block_by_hand(block, x)))


@torch.no_grad()
def test_option_a_shortcut_subsamples_and_zero_pads_channels():
    model = resnet("model=resnet20")
    x = torch.randn(2, 32, 16, 16)
    out = model.stage3.block0.shortcut(x)
    assert out.shape == (2, 64, 8, 8)
    torch.testing.assert_close(out[:, :32], x[..., ::2, ::2])
    assert out[:, 32:].abs().sum() == 0
    torch.testing.assert_close(out, F.pad(x[..., ::2, ::2], (0, 0, 0, 0, 0, 32)))
    assert sum(p.numel() for p in model.stage3.block0.shortcut.parameters()) == 0
    torch.testing.assert_close(model.stage1.block0.shortcut(x[:, :16]), x[:, :16])  # identity, same width
    # 1-D: subsample along the length
    sig = resnet("model=resnet", input_shape=(1, 40))
    s = torch.randn(3, 16, 40)
    torch.testing.assert_close(sig.stage2.block0.shortcut(s), torch.cat([s[..., ::2], torch.zeros(3, 16, 20)], 1))


@pytest.mark.parametrize("task", [DIGITS, SIGNAL], ids=["2d", "1d"])
@pytest.mark.parametrize("preset", ["resnet20", "plain20"])
def test_every_parameter_gets_a_finite_gradient(task, preset):
    model = resnet(f"model={preset}", input_shape=task.input_shape)
    x = torch.randn(8, *task.input_shape)
    F.cross_entropy(model(x), torch.arange(8) % 10).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_digits_never_go_below_one_pixel():
    model = resnet("model=resnet110", input_shape=DIGITS.input_shape)
    info = summarize(model, DIGITS.input_shape)
    shapes = {r["layer"]: r["output"] for r in info["rows"]}
    assert shapes["stage1.block17.relu2"] == (16, 8, 8)
    assert shapes["stage2.block0.conv1"] == (32, 4, 4) and shapes["stage3.block0.shortcut"] == (64, 2, 2)
    assert shapes["stage3.block17.relu2"] == (64, 2, 2) and shapes["pool"] == (64, 1, 1) and shapes["out"] == (10,)
    assert all(min(r["output"][1:]) >= 1 for r in info["rows"] if len(r["output"]) == 3)
    assert info["params"] == count_parameters(model)


@torch.no_grad()
def test_an_axis_at_one_pixel_is_not_downsampled():
    model = resnet("model=resnet", input_shape=(1, 2, 5))  # H: 2 -> 1 -> 1, W: 5 -> 3 -> 2
    assert model.stage2.block0.conv1.stride == (2, 2) and model.stage3.block0.conv1.stride == (1, 2)
    assert model.stage3.block0.shortcut.stride == (1, 2)
    shapes = {r["layer"]: r["output"] for r in summarize(model, (1, 2, 5))["rows"]}
    assert shapes["stage2.block0.relu2"] == (32, 1, 3) and shapes["stage3.block0.relu2"] == (64, 1, 2)
    tiny = resnet("model=resnet", input_shape=(1, 1, 1))
    assert tiny(torch.randn(2, 1, 1, 1)).shape == (2, 10)
    assert all(c.stride == (1, 1) for c in tiny.modules() if isinstance(c, torch.nn.Conv2d))


@pytest.mark.parametrize(
    ("preset", "depth", "skip"),
    [
        ("resnet", 20, True),
        ("resnet20", 20, True),
        ("resnet32", 32, True),
        ("resnet44", 44, True),
        ("resnet56", 56, True),
        ("resnet110", 110, True),
        ("plain20", 20, False),
        ("plain56", 56, False),
    ],
)
def test_presets_compose_and_validate(preset, depth, skip):
    cfg = compose([f"model={preset}"]).model
    assert (cfg.name, cfg.depth, cfg.skip, list(cfg.widths)) == ("resnet", depth, skip, [16, 32, 64])


def test_a_depth_that_is_not_6n_plus_2_is_refused():
    with pytest.raises(ConfigError, match="model.depth"):
        compose(["model=resnet", "model.depth=21"])
    with pytest.raises(ConfigError, match="model.widths"):
        compose(["model=resnet", "model.widths=[16,32]"])


def test_decreasing_widths_need_skip_false():
    with pytest.raises(ConfigError, match="model.widths"):
        resnet("model=resnet", "model.widths=[64,32,16]")
    model = resnet("model=resnet", "model.widths=[64,32,16]", "model.skip=false")
    assert model(torch.randn(2, *CIFAR)).shape == (2, 10)


def test_fit_check_refuses_tabular_data():
    cfg = compose(["model=resnet"]).model
    check_fit(cfg, DIGITS, "digits")
    check_fit(cfg, SIGNAL, "mnist1d")
    with pytest.raises(ConfigError) as err:
        check_fit(cfg, TABULAR, "iris")
    message = str(err.value)
    assert message.startswith("model=resnet does not fit data=iris: it convolves signals")
    assert message.endswith("; try model=mlp") and "\n" not in message


def test_a_short_training_learns_digits(tmp_path):
    cfg = compose(
        [
            "model=resnet",
            "model.depth=8",
            "data=digits",
            "trainer.epochs=5",
            f"runs_dir={tmp_path}",
            "trainer.progress=none",
            "trainer.hist_every=0",
        ]
    )
    summary = train(cfg)
    assert summary["status"] == "completed"
    assert summary["params"] == count_parameters(resnet("model=resnet", "model.depth=8", input_shape=(1, 8, 8)))
    assert summary["metrics"]["test/acc"] >= 0.9  # 0.978 when written
