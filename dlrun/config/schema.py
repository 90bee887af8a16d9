"""Typed schemas of every config group option (torch-free, so `dlrun config` and `--help` stay fast).

Each YAML file in conf/<group>/ names the schema it follows with its `name` key; the schema
lists the keys, their types and their valid ranges. `check_*` helpers raise FieldError, which
compose() turns into one line naming the full key.
"""

import os
from dataclasses import dataclass, field
from typing import Any

from dlrun.errors import suggest

# Names users type; the torch-side registries are tested to hold exactly these.
ACTIVATIONS = ("identity", "step", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "gelu")
NORMS = ("none", "batch", "layer")
LOSSES = ("auto", "cross_entropy", "nll", "bce", "mse")
DEVICES = ("auto", "cpu", "cuda", "mps")


class FieldError(ValueError):
    """A value outside its valid range; `key` is the field name inside its group."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key
        self.message = message


def check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise FieldError(key, f"'{value}' is not valid;{suggest(value, choices)} choose from: {', '.join(choices)}")


def check_range(
    key: str,
    value: float,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> None:
    bad = (lo is not None and (value < lo or (lo_open and value == lo))) or (
        hi is not None and (value > hi or (hi_open and value == hi))
    )
    if bad:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        span = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
        raise FieldError(key, f"{value} is out of range; valid: {span}")


# ---------------------------------------------------------------- model
@dataclass
class MLPConfig:
    name: str = "mlp"
    hidden: list[int] = field(default_factory=lambda: [256, 256])  # widths; [] = linear/logistic/softmax regression
    activation: str = "relu"
    dropout: float = 0.0  # drop probability p of each hidden unit (inverted dropout)
    norm: str = "none"  # none | batch | layer, after each hidden linear layer
    residual: bool = False  # skip connections around hidden layers as wide as the layer before

    def __post_init__(self):
        for i, width in enumerate(self.hidden):
            if width < 1:
                raise FieldError("hidden", f"width {width} at position {i} must be >= 1 (use [] for no hidden layer)")
        check_choice("activation", self.activation, ACTIVATIONS)
        check_range("dropout", self.dropout, 0.0, 1.0, hi_open=True)
        check_choice("norm", self.norm, NORMS)


POOLS = ("max", "avg", "none")
CNN_NORMS = ("none", "batch")


def check_widths(key: str, values: list[int], allow_empty: bool = True) -> None:
    if not values and not allow_empty:
        raise FieldError(key, "must hold at least one value")
    for i, v in enumerate(values):
        if v < 1:
            raise FieldError(key, f"{v} at position {i} must be >= 1")


def check_per_layer(key: str, values: list[int], n: int, lo: int) -> None:
    """A per-layer list holds one value (for every layer) or one per layer."""
    if len(values) not in (1, n):
        raise FieldError(key, f"give one value or {n} (one per conv layer), not {len(values)}")
    for v in values:
        check_range(key, v, lo)


@dataclass
class CNNConfig:
    name: str = "cnn"
    channels: list[int] = field(default_factory=lambda: [16, 32])  # output channels of each conv layer
    kernel: list[int] = field(default_factory=lambda: [3])  # F, one value or one per layer
    stride: list[int] = field(default_factory=lambda: [1])  # S
    padding: list[int] = field(default_factory=lambda: [1])  # P; output size M = (N - F + 2P) / S + 1
    pool: str = "max"  # max | avg | none, after each conv block
    pool_size: int = 2  # pooling window and stride (never pools below 1 pixel)
    activation: str = "relu"
    norm: str = "none"  # none | batch, after each conv
    dropout: float = 0.0  # after each block of the head
    hidden: list[int] = field(default_factory=lambda: [64])  # MLP head widths after flattening

    def __post_init__(self):
        check_widths("channels", self.channels, allow_empty=False)
        n = len(self.channels)
        check_per_layer("kernel", self.kernel, n, 1)
        check_per_layer("stride", self.stride, n, 1)
        check_per_layer("padding", self.padding, n, 0)
        check_choice("pool", self.pool, POOLS)
        check_range("pool_size", self.pool_size, 1)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("norm", self.norm, CNN_NORMS)
        check_range("dropout", self.dropout, 0.0, 1.0, hi_open=True)
        check_widths("hidden", self.hidden)


CELLS = ("rnn", "lstm", "gru")
READOUTS = ("last", "mean", "flatten")


@dataclass
class RNNConfig:
    name: str = "rnn"
    cell: str = "gru"  # rnn (tanh) | lstm | gru: h_t = F(x_t, h_{t-1}; W)
    hidden_size: int = 64
    layers: int = 1
    bidirectional: bool = False
    readout: str = "last"  # last: h_T; mean: mean over t; flatten: every step's output, concatenated
    dropout: float = 0.0  # between stacked layers

    def __post_init__(self):
        check_choice("cell", self.cell, CELLS)
        check_range("hidden_size", self.hidden_size, 1)
        check_range("layers", self.layers, 1)
        check_choice("readout", self.readout, READOUTS)
        check_range("dropout", self.dropout, 0.0, 1.0, hi_open=True)


@dataclass
class ResNetConfig:
    name: str = "resnet"
    depth: int = 20  # 6n + 2: a 3x3 stem, three stages of n basic blocks, global average pooling, FC
    widths: list[int] = field(default_factory=lambda: [16, 32, 64])  # channels of the stem and the stages
    skip: bool = True  # H(x) = F(x) + x; false: the plain network with the same parameter count

    def __post_init__(self):
        if self.depth < 8 or (self.depth - 2) % 6:
            raise FieldError("depth", f"{self.depth} is not 6n + 2 with n >= 1; use 8, 14, 20, 32, 44, 56, 110, ...")
        if len(self.widths) != 3:
            raise FieldError("widths", f"give three widths (one per stage), not {len(self.widths)}")
        check_widths("widths", self.widths, allow_empty=False)


# ---------------------------------------------------------------- data
STANDARDIZE = ("feature", "global", "unit", "none")  # unit: min-max to [0, 1] over all train values


@dataclass
class AugmentConfig:
    """Train-split augmentation, on the device, drawn fresh for every batch. All off by default."""

    crop: int = 0  # images: pad by this many pixels (zeros), then crop a random window of the original size
    shift: int = 0  # signals: pad the time axis by this many steps, then take a random window (a random shift)
    flip: bool = False  # images: mirror left-right with probability 1/2
    noise: float = 0.0  # Gaussian noise std added to every input value (standardized units)

    def __post_init__(self):
        check_range("augment.crop", self.crop, 0)
        check_range("augment.shift", self.shift, 0)
        check_range("augment.noise", self.noise, 0.0)

    @property
    def active(self) -> bool:
        return bool(self.crop or self.shift or self.flip or self.noise)


@dataclass
class DataConfig:
    name: str = "digits"
    val_fraction: float = 0.15  # of all examples
    test_fraction: float = 0.2  # of all examples
    seed: int = 0  # the split's seed (kept apart from trainer.seed so splits stay put across seeds)
    standardize: str = "feature"  # feature (per input), global (one mean/std), unit ([0, 1]) or none; fitted on train
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self):
        check_range("val_fraction", self.val_fraction, 0.0, 1.0, lo_open=True, hi_open=True)
        check_range("test_fraction", self.test_fraction, 0.0, 1.0, lo_open=True, hi_open=True)
        if self.val_fraction + self.test_fraction >= 0.9:
            raise FieldError("val_fraction", "val_fraction + test_fraction must stay below 0.9")
        check_choice("standardize", self.standardize, STANDARDIZE)


@dataclass
class MNIST1DConfig:
    name: str = "mnist1d"
    val_fraction: float = 0.1  # of the 4000 train examples (the 1000 test examples are fixed)
    seed: int = 0  # the train/val split's seed
    standardize: str = "none"  # the frozen data is already globally standardized
    shuffle_time: bool = False  # one fixed permutation of the 40 time steps, for every example
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self):
        check_range("val_fraction", self.val_fraction, 0.0, 1.0, lo_open=True, hi_open=True)
        check_choice("standardize", self.standardize, STANDARDIZE)


@dataclass
class RegressionConfig(DataConfig):
    standardize_targets: bool = True  # targets scaled by the train mean and std


@dataclass
class ImageSetConfig:
    name: str = "mnist"
    val_fraction: float = 0.1  # of the published train split; the published test split is kept
    seed: int = 0  # the train/val split's seed
    standardize: str = "global"  # one mean and std over all train pixels (fitted on train only)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self):
        check_range("val_fraction", self.val_fraction, 0.0, 1.0, lo_open=True, hi_open=True)
        check_choice("standardize", self.standardize, STANDARDIZE)


@dataclass
class SequenceConfig(DataConfig):
    n_samples: int = 2000  # sequences in all splits together
    length: int = 20  # time steps T

    def __post_init__(self):
        super().__post_init__()
        check_range("n_samples", self.n_samples, 20)
        check_range("length", self.length, 2)


@dataclass
class AddingConfig(SequenceConfig):
    standardize_targets: bool = True  # targets scaled by the train mean and std


@dataclass
class SinesConfig(SequenceConfig):
    noise: float = 0.05  # Gaussian noise std added to every value
    standardize_targets: bool = False  # targets scaled by the train mean and std

    def __post_init__(self):
        super().__post_init__()
        check_range("noise", self.noise, 0.0)


@dataclass
class SyntheticConfig(DataConfig):
    n_samples: int = 1000  # examples in all splits together
    noise: float = 0.1  # Gaussian noise std (units of the input or the target)

    def __post_init__(self):
        super().__post_init__()
        check_range("n_samples", self.n_samples, 20)
        check_range("noise", self.noise, 0.0)


@dataclass
class SineConfig(SyntheticConfig):
    standardize_targets: bool = False  # targets scaled by the train mean and std


@dataclass
class ClustersConfig(SyntheticConfig):
    classes: int = 2  # spiral arms or blobs, one class each

    def __post_init__(self):
        super().__post_init__()
        check_range("classes", self.classes, 2)


FILE_TASKS = ("auto", "classification", "regression")


@dataclass
class FilesConfig(DataConfig):
    """data=files: the user's own CSV file, .npz / .npy arrays or folder of images (dlrun/data/files.py)."""

    name: str = "files"
    path: str = ""  # a .csv, .npz or .npy file, or a folder with one sub-folder of images per class; relative to cwd
    target: str = ""  # CSV: the label column; "" = the last column
    labels: str = ""  # .npy: the file of labels, one per row of data.path (data.path=x.npy data.labels=y.npy)
    task: str = "auto"  # auto | classification | regression; auto: text or few integer labels are classes
    image_size: list[int] = field(default_factory=list)  # images: [H, W] to resize to; [] = keep (one size for all)
    channels: int = 0  # images: 0 = infer (1 when every image is grayscale, else 3), 1 (grayscale) or 3 (RGB)
    standardize_targets: bool = True  # regression: targets scaled by the train mean and std

    def __post_init__(self):
        super().__post_init__()
        # recorded as absolute paths, so that resume and viz read the same files from any directory
        self.path = os.path.abspath(os.path.expanduser(self.path)) if self.path else ""
        self.labels = os.path.abspath(os.path.expanduser(self.labels)) if self.labels else ""
        check_choice("task", self.task, FILE_TASKS)
        if len(self.image_size) not in (0, 2):
            raise FieldError("image_size", f"give [H, W] (or [] to keep the images' size), not {self.image_size}")
        check_widths("image_size", self.image_size)
        if self.channels not in (0, 1, 3):
            raise FieldError("channels", f"{self.channels} is not valid; choose from: 0 (infer), 1 (gray), 3 (RGB)")


# ---------------------------------------------------------------- loss
MSE_FORMS = ("mean", "half_sum")


@dataclass
class LossConfig:
    name: str = "auto"  # auto picks cross_entropy / bce / mse from the dataset's task

    def __post_init__(self):
        check_choice("name", self.name, LOSSES)


@dataclass
class MSELossConfig(LossConfig):
    form: str = "mean"  # mean = 1/K ||y_hat - y||^2, half_sum = 1/2 ||y_hat - y||^2 (per example)

    def __post_init__(self):
        super().__post_init__()
        check_choice("form", self.form, MSE_FORMS)


# ---------------------------------------------------------------- optim
OPTIM_IMPLS = ("torch", "lecture")


@dataclass
class OptimConfig:
    name: str = "sgd"
    lr: float = 0.01  # alpha, the step size
    weight_decay: float = 0.0  # PyTorch's coupled L2 (decoupled for adamw); see regularizer=l2 for the lecture form
    impl: str = "torch"  # torch: torch.optim; lecture: the lectures' formulas, written out (dlrun/optim/lecture.py)

    def __post_init__(self):
        check_range("lr", self.lr, 0.0, lo_open=True)
        check_range("weight_decay", self.weight_decay, 0.0)
        check_choice("impl", self.impl, OPTIM_IMPLS)


@dataclass
class MomentumConfig(OptimConfig):
    momentum: float = 0.9  # gamma of the heavy-ball update

    def __post_init__(self):
        super().__post_init__()
        check_range("momentum", self.momentum, 0.0, 1.0, hi_open=True)


@dataclass
class AdagradConfig(OptimConfig):
    eps: float = 1e-10  # added to the root of G (PyTorch: outside the square root)

    def __post_init__(self):
        super().__post_init__()
        check_range("eps", self.eps, 0.0)


@dataclass
class RMSpropConfig(OptimConfig):
    gamma: float = 0.9  # G = gamma G + (1 - gamma) g^2 (PyTorch calls it alpha)
    eps: float = 1e-8

    def __post_init__(self):
        super().__post_init__()
        check_range("gamma", self.gamma, 0.0, 1.0, hi_open=True)
        check_range("eps", self.eps, 0.0)


@dataclass
class AdamConfig(OptimConfig):
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8  # PyTorch and the paper: m_hat / (sqrt(v_hat) + eps)
    eps_inside_sqrt: bool = False  # the lecture's m_hat / sqrt(v_hat + eps); needs impl=lecture

    def __post_init__(self):
        super().__post_init__()
        check_range("beta1", self.beta1, 0.0, 1.0, hi_open=True)
        check_range("beta2", self.beta2, 0.0, 1.0, hi_open=True)
        check_range("eps", self.eps, 0.0)


@dataclass
class NewtonConfig(OptimConfig):
    damping: float = 1e-4  # theta -= lr (H + damping I)^-1 g, H the exact Hessian by autograd
    max_params: int = 5000  # larger models are refused (the Hessian has max_params^2 entries)

    def __post_init__(self):
        super().__post_init__()
        check_range("damping", self.damping, 0.0)
        check_range("max_params", self.max_params, 1)


# ---------------------------------------------------------------- sched
@dataclass
class SchedConfig:
    name: str = "constant"
    warmup_steps: int = 0  # linear warmup from lr/warmup_steps to lr over this many steps

    def __post_init__(self):
        check_range("warmup_steps", self.warmup_steps, 0)


@dataclass
class StepSchedConfig(SchedConfig):
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])  # fractions of all steps
    gamma: float = 0.1  # lr factor at each milestone

    def __post_init__(self):
        super().__post_init__()
        for m in self.milestones:
            check_range("milestones", m, 0.0, 1.0, lo_open=True, hi_open=True)
        check_range("gamma", self.gamma, 0.0, lo_open=True)


@dataclass
class CosineSchedConfig(SchedConfig):
    min_factor: float = 0.0  # the last lr as a fraction of the first

    def __post_init__(self):
        super().__post_init__()
        check_range("min_factor", self.min_factor, 0.0, 1.0)


@dataclass
class InverseTimeSchedConfig(SchedConfig):
    k: float = 0.01  # alpha_t = alpha_0 / (1 + k t), t in steps

    def __post_init__(self):
        super().__post_init__()
        check_range("k", self.k, 0.0)


# ---------------------------------------------------------------- regularizer
@dataclass
class RegularizerConfig:
    name: str = "none"
    strength: float = 0.0  # lambda

    def __post_init__(self):
        check_range("strength", self.strength, 0.0)


@dataclass
class L1Config(RegularizerConfig):
    zero_threshold: float = 1e-3  # weights with |w| below this count as zero in the logged sparsity

    def __post_init__(self):
        super().__post_init__()
        check_range("zero_threshold", self.zero_threshold, 0.0)


@dataclass
class ElasticConfig(L1Config):
    l1_ratio: float = 0.5  # Omega = lambda (r sum |W| + (1 - r)/2 sum ||W||^2)

    def __post_init__(self):
        super().__post_init__()
        check_range("l1_ratio", self.l1_ratio, 0.0, 1.0)


@dataclass
class DropoutRegConfig:
    name: str = "dropout"
    p: float = 0.5  # drop probability of each hidden unit; survivors scaled by 1/(1 - p); identity at evaluation

    def __post_init__(self):
        check_range("p", self.p, 0.0, 1.0, hi_open=True)


# ---------------------------------------------------------------- init
@dataclass
class InitConfig:
    name: str = "default"
    bias: float = 0.0  # every bias is set to this (not for init=default, which keeps PyTorch's biases)


@dataclass
class NormalInitConfig(InitConfig):
    std: float = 0.01  # W ~ N(0, std^2)

    def __post_init__(self):
        check_range("std", self.std, 0.0)


@dataclass
class UniformInitConfig(InitConfig):
    a: float = 0.05  # W ~ U[-a, a]

    def __post_init__(self):
        check_range("a", self.a, 0.0)


@dataclass
class ConstantInitConfig(InitConfig):
    c: float = 0.1  # every weight equals c (symmetry is never broken)


@dataclass
class OrthogonalInitConfig(InitConfig):
    gain: float = 1.0  # W = gain Q, Q (semi-)orthogonal

    def __post_init__(self):
        check_range("gain", self.gain, 0.0)


# ---------------------------------------------------------------- trainer
TEST_WITH = ("last", "best")
PROGRESS = ("auto", "bar", "lines", "none")


@dataclass
class TrainerConfig:
    epochs: int = 30
    steps: int = 0  # if > 0, train for this many optimizer steps instead of `epochs`
    batch_size: int = 32  # examples per step (optim=gd uses the whole train split)
    eval_every: int = 0  # steps between evaluations on val; 0 = once per epoch
    log_every: int = 50  # steps between train/loss, lr, grad/norm and weight-norm scalars
    hist_every: int = 500  # steps between weight and gradient histograms; 0 = off
    device: str = "auto"  # auto = cuda, then mps, then cpu; or cpu, cuda, cuda:1, mps
    seed: int = 0  # model init, data order and dropout
    threads: int = 1  # CPU threads for PyTorch; 0 = PyTorch's default (all cores). Small models run fastest on 1.
    grad_clip: float = 0.0  # max global gradient norm; 0 = off
    monitor: str = "auto"  # metric for `best` and early stopping; auto = val/acc (classification) or val/loss
    patience: int = 0  # evaluations without improvement before stopping; 0 = never stop early
    min_delta: float = 0.0  # smallest change of `monitor` that counts as an improvement
    test_with: str = "last"  # weights for the final test metrics: last or best
    checkpoint: bool = True  # write checkpoints/last.pt and best.pt
    checkpoint_every: float = 60.0  # seconds between checkpoint writes at evaluations (and always at the end)
    progress: str = "auto"  # auto = a bar on a terminal, plain lines otherwise; bar, lines, none
    diag_every: int = 500  # steps between diagnostics (per-layer grad norm, update/weight, activations); 0 = off

    def __post_init__(self):
        check_range("epochs", self.epochs, 1)
        check_range("steps", self.steps, 0)
        check_range("batch_size", self.batch_size, 1)
        check_range("eval_every", self.eval_every, 0)
        check_range("log_every", self.log_every, 1)
        check_range("hist_every", self.hist_every, 0)
        base = self.device.split(":")[0]
        check_choice("device", base, DEVICES)
        check_range("threads", self.threads, 0)
        check_range("grad_clip", self.grad_clip, 0.0)
        check_range("patience", self.patience, 0)
        check_range("min_delta", self.min_delta, 0.0)
        check_choice("test_with", self.test_with, TEST_WITH)
        check_range("checkpoint_every", self.checkpoint_every, 0.0)
        check_choice("progress", self.progress, PROGRESS)
        check_range("diag_every", self.diag_every, 0)


# ---------------------------------------------------------------- the whole
BACKPROPS = ("autograd", "manual")


@dataclass
class Config:
    """The composed, validated config that every library function reads."""

    model: Any = field(default_factory=MLPConfig)
    data: Any = field(default_factory=DataConfig)
    loss: Any = field(default_factory=MSELossConfig)
    optim: Any = field(default_factory=OptimConfig)
    sched: Any = field(default_factory=SchedConfig)
    regularizer: Any = field(default_factory=RegularizerConfig)
    init: Any = field(default_factory=InitConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    name: str | None = None  # run name; default: the experiment's name or <model>-<data>
    runs_dir: str = "runs"  # runs go to <runs_dir>/<name>/<timestamp>/
    resume: str | None = None  # a run directory to continue
    experiment: str | None = None  # set from `experiment=NAME`, recorded for the run directory
    backprop: str = "autograd"  # autograd, or manual: the lecture's fprop/bprop modules (MLP only)

    def __post_init__(self):
        check_choice("backprop", self.backprop, BACKPROPS)


# group -> option `name` -> schema. A group whose options share one schema maps every name to it.
SCHEMAS: dict[str, dict[str, type]] = {
    "model": {"mlp": MLPConfig, "cnn": CNNConfig, "rnn": RNNConfig, "resnet": ResNetConfig},
    "data": {
        **{n: DataConfig for n in ("digits", "iris", "breast_cancer", "wine")},
        "diabetes": RegressionConfig,
        **{n: SyntheticConfig for n in ("xor", "moons", "circles")},
        "sine": SineConfig,
        **{n: ClustersConfig for n in ("spirals", "blobs")},
        "files": FilesConfig,
        "mnist1d": MNIST1DConfig,
        **{n: ImageSetConfig for n in ("mnist", "fashion_mnist", "kmnist", "cifar10")},
        "adding": AddingConfig,
        "parity": SequenceConfig,
        "sines": SinesConfig,
    },
    "loss": {n: MSELossConfig if n in ("auto", "mse") else LossConfig for n in LOSSES},  # auto may become mse
    "optim": {
        "gd": OptimConfig,
        "sgd": OptimConfig,
        "momentum": MomentumConfig,
        "nesterov": MomentumConfig,
        "adagrad": AdagradConfig,
        "rmsprop": RMSpropConfig,
        "adam": AdamConfig,
        "adamw": AdamConfig,
        "newton": NewtonConfig,
    },
    "sched": {
        "constant": SchedConfig,
        "warmup": SchedConfig,
        "step": StepSchedConfig,
        "cosine": CosineSchedConfig,
        "inverse_time": InverseTimeSchedConfig,
    },
    "regularizer": {
        "none": RegularizerConfig,
        "l2": RegularizerConfig,
        "weight_decay": RegularizerConfig,
        "l1": L1Config,
        "elastic": ElasticConfig,
        "dropout": DropoutRegConfig,
    },
    "init": {
        **{n: InitConfig for n in ("default", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "zeros")},
        "normal": NormalInitConfig,
        "uniform": UniformInitConfig,
        "constant": ConstantInitConfig,
        "orthogonal": OrthogonalInitConfig,
    },
    "trainer": {"default": TrainerConfig},
}
GROUPS = tuple(SCHEMAS)
