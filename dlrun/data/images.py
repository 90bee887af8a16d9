"""Downloaded image sets: MNIST, Fashion-MNIST, KMNIST (1x28x28) and CIFAR-10 (3x32x32); ImageNet from
the user's own copy (nothing of it is downloaded).

The files come from dlrun.data.download (SHA-256-checked, cached in $DLRUN_DATA/<name>/); pixels
are scaled to [0, 1], then standardized with train statistics. The published test split is kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlrun.data import download
from dlrun.data.base import DATASETS, Dataset
from dlrun.data.bundled import split_and_standardize

CLASS_NAMES = {
    "mnist": tuple(str(d) for d in range(10)),
    "fashion_mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    "kmnist": ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}


def _image_set(name: str):
    def build(cfg) -> Dataset:
        x_train, y_train, x_test, y_test = download.load(name)
        x = np.concatenate([x_train, x_test]).astype(np.float32) / 255.0  # (N, C, H, W) in [0, 1]
        y = np.concatenate([y_train, y_test])
        return split_and_standardize(
            name, x, y, "multiclass", cfg, tuple(x.shape[1:]), CLASS_NAMES[name], "image", n_test=len(x_test)
        )

    return build


DATASETS.register("mnist", "MNIST handwritten digits, 1x28x28, 60000 + 10000 (downloaded)")(_image_set("mnist"))
DATASETS.register("fashion_mnist", "Fashion-MNIST, 1x28x28, 60000 + 10000 (downloaded)")(_image_set("fashion_mnist"))
DATASETS.register("kmnist", "Kuzushiji-MNIST, 1x28x28, 60000 + 10000 (downloaded)")(_image_set("kmnist"))
DATASETS.register("cifar10", "CIFAR-10, 3x32x32, 50000 + 10000 (downloaded)")(_image_set("cifar10"))


def _image_count(folder: Path) -> int:
    from dlrun.data.files import IMAGE_SUFFIXES

    return sum(1 for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


@DATASETS.register("imagenet", "ImageNet from a local copy (data.path), 3x224x224, 1,000 classes")
def imagenet(cfg) -> Dataset:
    """Class folders under data.path, or under data.path/train and data.path/val (the published validation
    set, 50 images per class, is then the test split). Every image is resized to data.image_size and held
    in memory, so a subset (Imagenette's 10 classes, say) is what fits a laptop."""
    from dlrun.data.files import read_images
    from dlrun.errors import ConfigError
    from dlrun.models import memory_bytes

    if not cfg.path:
        raise ConfigError(
            "data.path: required for data=imagenet; give the folder of your copy (class folders such as "
            "n01440764/, or train/ and val/ folders holding them); nothing is downloaded"
        )
    root = Path(cfg.path)
    if not root.is_dir():
        raise ConfigError(f"data.path={root}: no such folder")
    h, w = cfg.image_size
    parts = [root / "train", root / "val"] if (root / "train").is_dir() and (root / "val").is_dir() else [root]
    n = sum(_image_count(p) for p in parts)
    need, have = n * 3 * h * w * (4 + 8), memory_bytes()  # float32 pixels, then float64 while standardizing
    if need > have // 2:
        raise ConfigError(
            f"data.path={root}: {n:,} images at 3x{h}x{w} need about {need / 2**30:,.0f} GiB of memory, more than "
            f"half of this machine's {have / 2**30:.0f} GiB; use a subset of the classes or a smaller data.image_size"
        )
    sets = [read_images(p, [h, w], 3) for p in parts]
    names = tuple(sorted(set(sets[0][1])))
    if len(sets) == 2 and (extra := sorted(set(sets[1][1]) - set(names))):
        raise ConfigError(
            f"{root / 'val'}: class folder '{extra[0]}' is not in {root / 'train'}; give both the same classes"
        )
    index = {c: i for i, c in enumerate(names)}
    x = np.concatenate([images for images, _ in sets])
    y = np.array([index[c] for _, labels in sets for c in labels])
    n_test = len(sets[1][0]) if len(sets) == 2 else None
    kind = "binary" if len(names) == 2 else "multiclass"
    return split_and_standardize("imagenet", x, y, kind, cfg, tuple(x.shape[1:]), names, "image", n_test=n_test)
