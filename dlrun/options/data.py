"""Data options: the bundled, generated and downloadable sets users pick with data=NAME."""

import os
from dataclasses import dataclass, field

from dlrun.options.core import FieldError, Option, declaration, declare, opt, option

STANDARDIZE = ("feature", "global", "unit", "none")  # unit: min-max to [0, 1] over all train values


@dataclass
class AugmentConfig(Option):
    """Train-split augmentation, on the device, drawn fresh for every batch. All off by default."""

    crop: int = opt(0, ge=0)  # images: pad by this many pixels (zeros), then crop a random window
    shift: int = opt(0, ge=0)  # signals: pad the time axis by this many steps, then take a random window
    flip: bool = False  # images: mirror left-right with probability 1/2
    noise: float = opt(0.0, ge=0.0)  # Gaussian noise std added to every input value (standardized units)

    def __post_init__(self):
        try:
            super().__post_init__()
        except FieldError as e:
            raise FieldError(f"augment.{e.key}", e.message) from None

    @property
    def active(self) -> bool:
        return bool(self.crop or self.shift or self.flip or self.noise)


@dataclass
class DataConfig(Option):
    """Base of the data options: seeded splits and standardization fitted on the train split."""

    name: str = "digits"
    val_fraction: float = opt(0.15, ge=0.0, lt=1.0)  # of all examples; 0: no val split (evaluations on test)
    test_fraction: float = opt(0.2, gt=0.0, lt=1.0)  # of all examples
    seed: int = opt(0, ge=0, lt=2**32)  # the split's seed (apart from trainer.seed: splits stay put across seeds)
    standardize: str = opt("feature", choices=STANDARDIZE)  # feature, global, unit or none; fitted on train
    n_train: int = opt(0, ge=0)  # > 0: a subset of the train split of this size (stratified), for debugging
    targets: str = opt(
        "labels", choices=("labels", "inputs")
    )  # inputs: each example's target is its own input (autoencoders)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def check(self):
        if self.val_fraction + self.test_fraction >= 0.9:
            raise FieldError("val_fraction", "val_fraction + test_fraction must stay below 0.9")


@dataclass
class RegressionConfig(DataConfig):
    standardize_targets: bool = True  # targets scaled by the train mean and std


@dataclass
class SyntheticConfig(DataConfig):
    n_samples: int = opt(1000, ge=20, le=10_000_000)  # examples in all splits together (generated in memory)
    noise: float = opt(0.1, ge=0.0)  # Gaussian noise std (units of the input or the target)


@dataclass
class SineConfig(SyntheticConfig):
    standardize_targets: bool = False  # targets scaled by the train mean and std


@dataclass
class ClustersConfig(SyntheticConfig):
    classes: int = opt(2, ge=2)  # spiral arms or blobs, one class each


@dataclass
class SequenceConfig(DataConfig):
    n_samples: int = opt(2000, ge=20, le=10_000_000)  # sequences in all splits together (generated in memory)
    length: int = opt(20, ge=2)  # time steps T


@dataclass
class AddingConfig(SequenceConfig):
    standardize_targets: bool = True  # targets scaled by the train mean and std


@dataclass
class SinesConfig(SequenceConfig):
    noise: float = opt(0.05, ge=0.0)  # Gaussian noise std added to every value
    standardize_targets: bool = False  # targets scaled by the train mean and std


@option("data", "files", "Your own data: a CSV file, .npz / .npy arrays or a folder of images (set data.path)")
class FilesConfig(RegressionConfig):
    """data=files: the user's own CSV file, .npz / .npy arrays or folder of images (dlrun/data/files.py)."""

    path: str = ""  # a .csv, .npz or .npy file, or a folder with one sub-folder of images per class; relative to cwd
    target: str = ""  # CSV: the label column; "" = the last column
    labels: str = ""  # .npy: the file of labels, one per row of data.path (data.path=x.npy data.labels=y.npy)
    task: str = opt("auto", choices=("auto", "classification", "regression"))  # auto: text or few integer labels
    image_size: list[int] = opt([], ge=1, le=8192)  # images: [H, W] to resize to; [] = keep (one size for all)
    channels: int = 0  # images: 0 = infer (1 when every image is grayscale, else 3), 1 (grayscale) or 3 (RGB)

    def check(self):
        super().check()
        # recorded as absolute paths, so that resume and viz read the same files from any directory
        self.path = os.path.abspath(os.path.expanduser(self.path)) if self.path else ""
        self.labels = os.path.abspath(os.path.expanduser(self.labels)) if self.labels else ""
        if len(self.image_size) not in (0, 2):
            raise FieldError("image_size", f"give [H, W] (or [] to keep the images' size), not {self.image_size}")
        if self.channels not in (0, 1, 3):
            raise FieldError("channels", f"{self.channels} is not valid; choose from: 0 (infer), 1 (gray), 3 (RGB)")


@option("data", "mnist1d", input_kind="signal", shape=(1, 40), classes=10)
class MNIST1DConfig(Option):
    """MNIST-1D: 40-step signals of 10 digits (Greydanus and Kobak), 4000 train / 1000 test, generated offline"""

    name: str = ""
    val_fraction: float = opt(0.1, ge=0.0, lt=1.0)  # of the 4000 train examples (1000 fixed test); 0: no val split
    seed: int = opt(0, ge=0, lt=2**32)  # the train/val split's seed (scikit-learn takes 32 bits)
    standardize: str = opt("none", choices=STANDARDIZE)  # the frozen data is already globally standardized
    shuffle_time: bool = False  # one fixed permutation of the 40 time steps, for every example
    n_train: int = opt(0, ge=0)  # > 0: a subset of the train split of this size (stratified), for debugging
    targets: str = opt(
        "labels", choices=("labels", "inputs")
    )  # inputs: each example's target is its own input (autoencoders)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class ImageSetConfig(Option):
    """Base of the downloaded image sets: the published test split is kept."""

    name: str = "mnist"
    val_fraction: float = opt(0.1, ge=0.0, lt=1.0)  # of the published train split; 0: no val split
    seed: int = opt(0, ge=0, lt=2**32)  # the train/val split's seed (scikit-learn takes 32 bits)
    standardize: str = opt("global", choices=STANDARDIZE)  # one mean and std over all train pixels
    n_train: int = opt(0, ge=0)  # > 0: a subset of the train split of this size (stratified), for debugging
    targets: str = opt(
        "labels", choices=("labels", "inputs")
    )  # inputs: each example's target is its own input (autoencoders)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


declare(
    "data",
    "digits",
    DataConfig,
    "8x8 handwritten digits (scikit-learn), 1797 images, 10 classes",
    defaults={"standardize": "global"},
    input_kind="image",
    shape=(1, 8, 8),
    classes=10,
)
declare(
    "data",
    "iris",
    DataConfig,
    "Iris flowers (scikit-learn), 150 examples, 4 features, 3 classes",
    input_kind="tabular",
    shape=(4,),
    classes=3,
)
declare(
    "data",
    "breast_cancer",
    DataConfig,
    "Breast cancer Wisconsin (scikit-learn), 569 examples, 30 features, binary",
    input_kind="tabular",
    shape=(30,),
    classes=2,
)
declare(
    "data",
    "wine",
    DataConfig,
    "Wine cultivars (scikit-learn), 178 examples, 13 features, 3 classes",
    input_kind="tabular",
    shape=(13,),
    classes=3,
)
declare(
    "data",
    "diabetes",
    RegressionConfig,
    "Diabetes progression (scikit-learn), 442 examples, 10 features, regression",
    input_kind="tabular",
    shape=(10,),
    task="regression",
)
declare(
    "data",
    "xor",
    SyntheticConfig,
    "XOR: four Gaussian clusters at (+-1, +-1), label 1 where x1 * x2 < 0 (binary)",
    defaults={"noise": 0.3, "standardize": "none"},
    input_kind="tabular",
    shape=(2,),
    classes=2,
)
declare(
    "data",
    "moons",
    SyntheticConfig,
    "Two interleaving half circles (scikit-learn make_moons), binary",
    defaults={"noise": 0.15},
    input_kind="tabular",
    shape=(2,),
    classes=2,
)
declare(
    "data",
    "circles",
    SyntheticConfig,
    "A small circle inside a large one (scikit-learn make_circles), binary",
    defaults={"noise": 0.08},
    input_kind="tabular",
    shape=(2,),
    classes=2,
)
declare(
    "data",
    "sine",
    SineConfig,
    "1-D regression: y = sin(x) + noise for x uniform in [-pi, pi]",
    input_kind="tabular",
    shape=(1,),
    task="regression",
)
declare(
    "data",
    "spirals",
    ClustersConfig,
    "Interleaved spiral arms, one class per arm",
    defaults={"n_samples": 1500, "noise": 0.2, "classes": 3},
    input_kind="tabular",
    shape=(2,),
    task="classification",
)
declare(
    "data",
    "blobs",
    ClustersConfig,
    "Isotropic Gaussian blobs in 2-D (scikit-learn make_blobs), one class per blob",
    defaults={"noise": 1.0, "classes": 4},
    input_kind="tabular",
    shape=(2,),
    task="classification",
)


@dataclass
class MajorityConfig(SequenceConfig):
    min_length: int = opt(5, ge=1)  # the shortest sequence; lengths are odd, from min_length to length


declare(
    "data",
    "majority",
    MajorityConfig,
    "Variable-length sequences of +-1 (odd lengths 5 to 31, padded, with a mask channel): is most of it +1? (binary)",
    defaults={"length": 31, "standardize": "none"},
    input_kind="signal",
    classes=2,
)
declare(
    "data",
    "adding",
    AddingConfig,
    "Adding problem (Hochreiter and Schmidhuber 1997): sum of the 2 marked values in a 2 x 20 signal, regression",
    defaults={"standardize": "none"},
    input_kind="signal",
    task="regression",
)
declare(
    "data",
    "parity",
    SequenceConfig,
    "Parity: XOR of an 8-bit string (1 x 8 signal of 0/1), binary",
    defaults={"length": 8, "standardize": "global"},
    input_kind="signal",
    classes=2,
)
declare(
    "data",
    "sines",
    SinesConfig,
    "Noisy sines (1 x 20 signal, 1-3 periods, random phase): predict the noise-free next value, regression",
    defaults={"standardize": "none"},
    input_kind="signal",
    task="regression",
)
declare(
    "data",
    "mnist",
    ImageSetConfig,
    "MNIST handwritten digits, 1x28x28, 60000 train + 10000 test (downloaded once, SHA-256 checked)",
    download=True,
    input_kind="image",
    shape=(1, 28, 28),
    classes=10,
)
declare(
    "data",
    "fashion_mnist",
    ImageSetConfig,
    "Fashion-MNIST clothing images, 1x28x28, 60000 + 10000 (downloaded once, SHA-256 checked)",
    download=True,
    input_kind="image",
    shape=(1, 28, 28),
    classes=10,
)
declare(
    "data",
    "kmnist",
    ImageSetConfig,
    "Kuzushiji-MNIST cursive Japanese characters, 1x28x28, 60000 + 10000 (downloaded once, SHA-256 checked)",
    download=True,
    input_kind="image",
    shape=(1, 28, 28),
    classes=10,
)
declare(
    "data",
    "cifar10",
    ImageSetConfig,
    "CIFAR-10 colour images, 3x32x32, 50000 train + 10000 test (downloaded once, SHA-256 checked)",
    download=True,
    input_kind="image",
    shape=(3, 32, 32),
    classes=10,
)


def known_task(data_cfg) -> str:
    """classification or regression when the dataset's declaration (or data.task) says so; "" when only its
    data can tell (data=files with data.task=auto)."""
    caps = declaration("data", data_cfg.name).caps
    given = getattr(data_cfg, "task", "auto")
    if given in ("classification", "regression"):
        return given
    return caps.task or ("classification" if caps.classes else "")


@option(
    "data",
    "imagenet",
    "ImageNet (ILSVRC-2012) from your local copy (data.path): 3x224x224, 1,000 classes; nothing is downloaded",
    input_kind="image",
    shape=(3, 224, 224),
    classes=1000,
    local=True,
)
class ImageNetConfig(ImageSetConfig):
    """data=imagenet: class folders (n01440764/...) under data.path, or under its train/ and val/ folders."""

    path: str = ""  # the folder: <path>/<class>/<image>, or <path>/train/<class>/... and <path>/val/<class>/...
    image_size: list[int] = opt([224, 224], ge=1, le=8192)  # [H, W] every image is resized to
    test_fraction: float = opt(0.2, gt=0.0, lt=1.0)  # without a val/ folder: the test split, of all images

    def check(self):
        self.path = os.path.abspath(os.path.expanduser(self.path)) if self.path else ""
        if len(self.image_size) != 2:
            raise FieldError("image_size", f"give [H, W], not {self.image_size}")
