"""data.augment: random windows (crop, shift), flips and noise on train batches only."""

from __future__ import annotations

import pytest
import torch

from dlrun.config import compose
from dlrun.data import Task
from dlrun.data.augment import build, random_flip, random_window
from dlrun.errors import ConfigError
from dlrun.options import AugmentConfig

IMAGE = Task(kind="multiclass", input_shape=(1, 5, 5), input_kind="image", n_classes=2)
SIGNAL = Task(kind="multiclass", input_shape=(2, 7), input_kind="signal", n_classes=2)


def windows(x: torch.Tensor, pad: int) -> list[torch.Tensor]:
    """Every window of x's size in the zero-padded x (the hand reference)."""
    p = torch.nn.functional.pad(x, [pad] * (2 * (x.dim() - 1)))
    if x.dim() == 2:  # (C, L)
        return [p[:, i : i + x.shape[1]] for i in range(2 * pad + 1)]
    h, w = x.shape[1:]
    return [p[:, i : i + h, j : j + w] for i in range(2 * pad + 1) for j in range(2 * pad + 1)]


@pytest.mark.parametrize("shape", [(16, 1, 5, 5), (16, 2, 7)])
def test_random_window_is_a_shifted_window_of_the_padded_input(shape):
    torch.manual_seed(0)
    x = torch.randn(shape)
    out = random_window(x, 2)
    assert out.shape == x.shape
    offsets = set()
    for xi, oi in zip(x, out, strict=True):
        matches = [k for k, w in enumerate(windows(xi, 2)) if torch.equal(w, oi)]
        assert matches, "not a window of the padded example"
        offsets.add(matches[0])
    assert len(offsets) > 1  # offsets are drawn per example


def test_random_flip_mirrors_about_half():
    torch.manual_seed(0)
    x = torch.randn(400, 1, 3, 4)
    out = random_flip(x)
    flipped = torch.tensor([torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x, strict=True)])
    kept = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x, strict=True)])
    assert bool((flipped | kept).all()) and 150 < int(flipped.sum()) < 250


def test_noise_has_the_configured_std():
    torch.manual_seed(0)
    fn = build(AugmentConfig(noise=0.3), SIGNAL)
    x = torch.zeros(200, 2, 7)
    assert abs(fn(x).std().item() - 0.3) < 0.02


def test_off_by_default_and_checked_against_the_data():
    assert build(AugmentConfig(), IMAGE) is None
    with pytest.raises(ConfigError, match="crop works on images"):
        build(AugmentConfig(crop=2), SIGNAL)
    with pytest.raises(ConfigError, match="shift works on signals"):
        build(AugmentConfig(shift=2), IMAGE)
    with pytest.raises(ConfigError, match="data.augment.crop"):
        compose(["data.augment.crop=-1"])


def test_resume_replays_the_same_augmentations(runs):
    """Augmentations draw from torch's RNG, which checkpoints carry: a resumed run equals a whole one."""
    from dlrun.train import train
    from tests.conftest import quick
    from tests.test_train import assert_same_weights, final_weights

    common = ("model=lenet5", "data.augment.crop=1", "data.augment.noise=0.1", "trainer.batch_size=128")
    whole = train(compose(quick(runs, *common, "trainer.epochs=2", "name=whole")))
    half = train(compose(quick(runs, *common, "trainer.epochs=1", "name=half")))
    train(compose([f"resume={half['run_dir']}", "trainer.epochs=2", "trainer.progress=none"]))
    assert_same_weights(final_weights(whole["run_dir"]), final_weights(half["run_dir"]))
    # and augmentation changes what is learned: without it the weights differ
    plain = train(compose(quick(runs, "model=lenet5", "trainer.batch_size=128", "trainer.epochs=2", "name=plain")))
    assert not torch.equal(
        final_weights(plain["run_dir"])["layers.conv1.weight"], final_weights(whole["run_dir"])["layers.conv1.weight"]
    )
