"""The architectures the lectures name (AlexNet, VGG, GoogLeNet, the ImageNet ResNets, LeNet-5 as published)
against their published parameter counts, their small-image forms, and data=imagenet from a local folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dlrun.config import compose
from dlrun.errors import ConfigError
from dlrun.models import MODELS, named
from tests.conftest import dlrun

# torchvision's counts (models/*.py docs) for 3x224x224 inputs and 1,000 classes
PUBLISHED = {
    "alexnet": 61_100_840,
    "vgg11": 132_863_336,
    "vgg13": 133_047_848,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "googlenet": 6_624_904,  # without the two auxiliary classifiers
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}


def meta_model(name: str, shape: tuple[int, ...], classes: int, *overrides: str):
    """model=NAME built on the meta device (shapes and counts, nothing allocated)."""
    cfg = compose([f"model={name}", *overrides]).model
    with torch.device("meta"):
        return MODELS.get(name)(cfg, shape, classes)


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_parameter_count_on_imagenet(name):
    assert count(meta_model(name, (3, 224, 224), 1000)) == PUBLISHED[name]


@pytest.mark.parametrize("name", PUBLISHED)
@pytest.mark.parametrize("shape", [(3, 224, 224), (3, 32, 32), (1, 8, 8)], ids=["imagenet", "cifar", "digits"])
def test_every_form_maps_images_to_class_scores(name, shape):
    model = meta_model(name, shape, 10)
    assert model(torch.zeros(2, *shape, device="meta")).shape == (2, 10)


def test_the_small_form_changes_only_the_first_layer():
    """stem=small: a 3x3 stride-1 first convolution instead of 7x7 stride 2 (ResNet-18: 64*3*(49-9) fewer
    weights) and no early max pooling; auto picks it below 64 pixels, the published stem at 64 and above."""
    big, small = meta_model("resnet18", (3, 224, 224), 1000), meta_model("resnet18", (3, 32, 32), 1000)
    assert count(big) - count(small) == 64 * 3 * (49 - 9)
    assert small.stem[0].kernel_size == (3, 3) and small.stem[0].stride == (1, 1)
    assert isinstance(small.stem[3], torch.nn.Identity) and isinstance(big.stem[3], named.FitPool)
    assert meta_model("resnet18", (3, 64, 64), 10).stem[0].kernel_size == (7, 7)
    forced = meta_model("resnet18", (3, 224, 224), 1000, "model.stem=small")
    assert forced.stem[0].kernel_size == (3, 3)
    # CIFAR's ResNet-18 as usually trained (3x3 stem, 10 classes): 11,173,962 parameters
    assert count(meta_model("resnet18", (3, 32, 32), 10)) == 11_173_962


def test_fit_pool_passes_a_map_smaller_than_its_window():
    pool = named.FitPool(3, 2)
    x = torch.arange(4.0).reshape(1, 1, 2, 2)
    assert torch.equal(pool(x), x)
    y = torch.arange(9.0).reshape(1, 1, 3, 3)
    assert pool(y).item() == 8.0  # a 3x3 map is pooled: max of all nine


def test_googlenet_inception_widths_add_up():
    """Each module's output channels are the sum of its four branches (256 after 3a, 1024 after 5b)."""
    m = named.Inception(192, 64, 96, 128, 16, 32, 32)
    assert m(torch.zeros(1, 192, 7, 7)).shape == (1, 64 + 128 + 32 + 32, 7, 7)


def test_lenet5_original_has_61706_parameters():
    """C1 156 + C3 2,416 + C5 48,120 + F6 10,164 + output 850 on MNIST padded to 32x32."""
    result = dlrun("summary", "model=lenet5_original", "data=mnist")
    assert result.returncode == 0, result.stderr
    assert "total parameters: 61,706" in result.stdout
    assert "AvgPool2d" in result.stdout and "Tanh" in result.stdout


def test_summary_gives_the_published_count_without_files():
    result = dlrun("summary", "model=googlenet", "data=imagenet")
    assert result.returncode == 0, result.stderr
    assert "total parameters: 6,624,904" in result.stdout and "1000 classes" in result.stdout


def test_a_named_model_trains_on_digits(tmp_path):
    """The small form trains end to end on 8x8 digits (two steps, loss finite, run finished)."""
    result = dlrun(
        "train", "model=resnet18", "data=digits", "trainer.steps=2", "trainer.progress=none",
        f"runs_dir={tmp_path}", "trainer.hist_every=0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "test/acc" in result.stdout


def test_named_models_refuse_other_inputs():
    result = dlrun("summary", "model=vgg16", "data=iris")
    assert result.returncode == 2
    assert "model=vgg16 does not fit data=iris: it reads images (C, H, W)" in result.stderr
    result = dlrun("train", "model=resnet50", "regularizer=dropout")
    assert result.returncode == 2 and "model=resnet50 has no dropout" in result.stderr
    result = dlrun("train", "model=alexnet", "regularizer=dropout")
    assert result.returncode == 2 and "set model.dropout (published: 0.5)" in result.stderr


# ----------------------------------------------------------------------------- data=imagenet
def write_images(root, classes: dict[str, int], size=(20, 24)):
    rng = np.random.default_rng(0)
    for name, n in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray((rng.random((*size, 3)) * 255).astype("uint8")).save(root / name / f"{i}.JPEG")


def build_imagenet(*overrides: str):
    from dlrun.data import build

    return build(compose(["data=imagenet", *overrides]).data)


def test_imagenet_reads_train_and_val_folders(tmp_path):
    """train/ and val/ class folders: val is the test split, images resized to data.image_size (RGB)."""
    write_images(tmp_path / "train", {"n01440764": 10, "n01443537": 10, "n01484850": 10})
    write_images(tmp_path / "val", {"n01440764": 2, "n01443537": 2, "n01484850": 2}, size=(30, 30))
    data = build_imagenet(f"data.path={tmp_path}", "data.image_size=[16,16]", "data.val_fraction=0.2")
    assert data.task.input_shape == (3, 16, 16) and data.task.n_classes == 3
    assert len(data.test) == 6 and len(data.train) + len(data.val) == 30 and len(data.val) == 6
    assert data.task.class_names == ("n01440764", "n01443537", "n01484850")


def test_imagenet_splits_a_single_folder(tmp_path):
    write_images(tmp_path, {"a": 10, "b": 10})
    data = build_imagenet(f"data.path={tmp_path}", "data.image_size=[8,8]", "data.test_fraction=0.5")
    assert len(data.test) == 10 and data.task.kind == "binary"


def test_imagenet_refusals(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="data.path: required for data=imagenet"):
        build_imagenet()
    with pytest.raises(ConfigError, match="no such folder"):
        build_imagenet(f"data.path={tmp_path / 'nowhere'}")
    write_images(tmp_path / "train", {"a": 4, "b": 4})
    write_images(tmp_path / "val", {"a": 1, "c": 1})
    with pytest.raises(ConfigError, match="class folder 'c' is not in"):
        build_imagenet(f"data.path={tmp_path}", "data.image_size=[8,8]")
    import dlrun.models

    monkeypatch.setattr(dlrun.models, "memory_bytes", lambda: 2**20)  # 1 MiB: 10 images at 224x224 do not fit
    with pytest.raises(ConfigError, match=r"10 images at 3x224x224 need about .* GiB of memory"):
        build_imagenet(f"data.path={tmp_path}")
