"""Downloaded image sets: MNIST, Fashion-MNIST, KMNIST (1x28x28) and CIFAR-10 (3x32x32).

The files come from dlrun.data.download (SHA-256-checked, cached in $DLRUN_DATA/<name>/); pixels
are scaled to [0, 1], then standardized with train statistics. The published test split is kept.
"""

from __future__ import annotations

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
