"""Model options: the architectures users pick with model=NAME (presets live in conf/model/)."""

from dataclasses import dataclass
from math import prod

from dlrun.options.core import FieldError, Option, caps, check_range, declare, declared, opt, option

ACTIVATIONS = ("identity", "step", "sign", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "gelu")
NORMS = ("none", "batch", "layer")
CELLS = ("rnn", "lstm", "gru", "mlp")
READOUTS = ("last", "mean", "flatten")
POOLS = ("max", "avg", "none")
CONV = "convolves signals (C, L) or images (C, H, W)"
NEIGHBOURS = "neighbourhood to convolve"
GRID = ("signal", "image")


@dataclass
class ModelConfig(Option):
    """Base of the model options."""

    name: str = ""


@option(
    "model",
    "mlp",
    dropout="hidden layer",
)
class MLPConfig(ModelConfig):
    """Multilayer perceptron; hidden=[] gives linear, logistic or softmax regression"""

    hidden: list[int] = opt([256, 256], ge=1)  # widths; [] = linear/logistic/softmax regression
    activation: str = opt("relu", choices=ACTIVATIONS, per_layer=True)  # one for all, or [relu,tanh]: one per layer
    dropout: float = opt(0.0, ge=0.0, lt=1.0)  # drop probability p of each hidden unit (inverted dropout)
    norm: str = opt("none", choices=NORMS)  # after each hidden linear layer
    residual: bool = False  # skip connections around hidden layers as wide as the layer before
    skip_scale: float = opt(1.0, ge=0.0)  # skip connections H(x) = F(x) + skip_scale * x; not 1: residual on
    bias: bool = True  # false: every layer is z = W h, with no b (through the origin)

    def check(self):
        n = len(self.activation.split(","))
        if n > 1 and n != len(self.hidden):
            raise FieldError("activation", f"give one activation or {len(self.hidden)} (one per hidden layer), not {n}")


def check_per_layer(key: str, values: list[int], n: int) -> None:
    """A per-layer list holds one value (for every layer) or one per layer."""
    if len(values) not in (1, n):
        raise FieldError(key, f"give one value or {n} (one per conv layer), not {len(values)}")


@option("model", "cnn", inputs=GRID, reads=CONV, lacks=NEIGHBOURS, dropout="fully connected hidden layer in its head")
class CNNConfig(ModelConfig):
    """Convolutional network: conv blocks (conv, norm, activation, pooling) then an MLP head; 1-D or 2-D"""

    channels: list[int] = opt([16, 32], ge=1)  # output channels of each conv layer
    kernel: list[int] = opt([3], ge=1)  # F, one value or one per layer
    stride: list[int] = opt([1], ge=1)  # S
    padding: list[int] = opt([1], ge=0)  # P; output size M = (N - F + 2P) / S + 1
    pool: str = opt("max", choices=POOLS)  # after each conv block
    pool_size: int = opt(2, ge=1)  # pooling window and stride (never pools below 1 pixel)
    activation: str = opt("relu", choices=ACTIVATIONS)
    norm: str = opt("none", choices=("none", "batch", "layer", "group"))  # after each conv
    groups: int = opt(4, ge=1)  # norm=group: groups of channels (every conv layer's channels divisible by it)
    dropout: float = opt(0.0, ge=0.0, lt=1.0)  # after each block of the head
    hidden: list[int] = opt([64], ge=1)  # MLP head widths after flattening

    def check(self):
        if not self.channels:
            raise FieldError("channels", "must hold at least one value")
        for key in ("kernel", "stride", "padding"):
            check_per_layer(key, getattr(self, key), len(self.channels))
        odd = [c for c in self.channels if c % self.groups]
        if self.norm == "group" and odd:
            raise FieldError("groups", f"{self.groups} does not divide {odd[0]} channels; give a divisor of every "
                             f"conv layer's channels ({', '.join(map(str, self.channels))})")  # fmt: skip


@option(
    "model",
    "rnn",
    inputs=GRID,
    reads="reads sequences (signals, or images row by row)",
    no_dropout="model=rnn keeps its activations inside the recurrent cell; use model.dropout with "
    "model.layers >= 2 (dropout between stacked layers), or regularizer=l2 / weight_decay",
)
class RNNConfig(ModelConfig):
    """Recurrent network h_t = F(x_t, h_{t-1}; W): a signal step by step or an image row by row, then a head"""

    cell: str = opt("gru", choices=CELLS)  # rnn (tanh) | lstm | gru | mlp: h_t = MLP([x_t, h_{t-1}])
    cell_hidden: list[int] = opt([64], ge=1)  # cell=mlp: the hidden widths of the cell's MLP (tanh)
    hidden_size: int = opt(64, ge=1)  # units of h_t (per direction)
    layers: int = opt(1, ge=1)  # stacked recurrent layers
    bidirectional: bool = False  # also read the sequence backwards; outputs side by side
    readout: str = opt("last", choices=READOUTS)  # h_T, mean over t, or every step's output
    dropout: float = opt(0.0, ge=0.0, lt=1.0)  # between stacked layers


@option(
    "model",
    "transformer",
    inputs=GRID,
    reads="reads sequences of tokens (a signal's steps or an image's rows)",
    no_dropout="model=transformer has its own dropout inside each layer: set model.dropout",
)
class TransformerConfig(ModelConfig):
    """Transformer encoder: tokens = time steps (or image rows), positions, self-attention layers, readout, head"""

    d_model: int = opt(32, ge=1)  # width of each token
    heads: int = opt(4, ge=1)  # attention heads; d_model must be a multiple
    layers: int = opt(2, ge=1)  # encoder layers
    ff: int = opt(64, ge=1)  # hidden width of each layer's feed-forward block
    dropout: float = opt(0.0, ge=0.0, lt=1.0)  # inside each layer (attention weights and feed-forward)
    positions: str = opt("learned", choices=("learned", "sinusoidal", "none"))  # none: blind to order
    readout: str = opt("mean", choices=("mean", "cls"))  # mean over tokens, or a learned class token
    norm_first: bool = False  # layer norm before each block (pre-norm) instead of after it (the paper's)

    def check(self):
        if self.d_model % self.heads:
            raise FieldError("heads", f"d_model={self.d_model} is not a multiple of heads={self.heads}")


@option(
    "model",
    "resnet",
    inputs=GRID,
    reads=CONV,
    lacks=NEIGHBOURS,
    no_dropout="model=resnet has no dropout (it relies on batch norm); use regularizer=weight_decay or l2",
)
class ResNetConfig(ModelConfig):
    """Residual network, CIFAR family (He et al. 2016): 3x3 stem, three stages of basic blocks, pooling, FC"""

    depth: int = 20  # 6n + 2: a 3x3 stem, three stages of n basic blocks, global average pooling, FC
    widths: list[int] = opt([16, 32, 64], ge=1)  # channels of the stem and the stages
    skip: bool = True  # H(x) = F(x) + x; false: the plain network with the same parameter count

    def check(self):
        check_range("depth", self.depth)
        if self.depth < 8 or (self.depth - 2) % 6:
            raise FieldError("depth", f"{self.depth} is not 6n + 2 with n >= 1; use 8, 14, 20, 32, 44, 56, 110, ...")
        if len(self.widths) != 3:
            raise FieldError("widths", f"give three widths (one per stage), not {len(self.widths)}")


@dataclass
class UnitConfig(ModelConfig):
    """Base of the classical single units (perceptron, ADALINE): z = w . x + b on the flattened input."""

    bias: bool = True  # false: z = w . x (through the origin)


UNIT_NO_DROPOUT = "model={name} is a single unit with no hidden layer to drop units of"
PERCEPTRON_RULE = (
    "loss=perceptron", "optim=sgd", "optim.lr=1", "trainer.batch_size=1", "trainer.stop_at_zero_loss=true",
    "init=constant", "init.c=0", "trainer.epochs=100",
)  # fmt: skip
LMS_RULE = (
    "loss=mse", "loss.form=half_sum", "optim=sgd", "optim.lr=0.01", "trainer.batch_size=1", "init=constant",
    "init.c=0",
)  # fmt: skip
declare(
    "model",
    "perceptron",
    UnitConfig,
    "Rosenblatt's perceptron: sign(w . x + b), trained by the perceptron rule (updates on mistakes, +-1 labels)",
    implies=PERCEPTRON_RULE,
    no_dropout=UNIT_NO_DROPOUT.format(name="perceptron"),
)
declare(
    "model",
    "adaline",
    UnitConfig,
    "ADALINE (Widrow and Hoff): the linear output w . x + b trained by LMS on +-1 targets; class = its sign",
    implies=LMS_RULE,
    no_dropout=UNIT_NO_DROPOUT.format(name="adaline"),
)


@option(
    "model",
    "autoencoder",
    implies=("data.targets=inputs",),
    no_dropout="model=autoencoder has no dropout; use regularizer=l2 or weight_decay",
)
class AutoencoderConfig(ModelConfig):
    """Autoencoder: an MLP encoder down to a code, a mirrored decoder back to the input (data.targets=inputs)"""

    hidden: list[int] = opt([64], ge=1)  # encoder widths (the decoder mirrors them)
    code: int = opt(8, ge=1)  # the bottleneck: the code's width
    activation: str = opt("relu", choices=ACTIVATIONS)


STEMS = ("auto", "imagenet", "small")
IMAGES = ("image",)
READS_IMAGES = "reads images (C, H, W)"


@dataclass
class NamedConfig(ModelConfig):
    """Base of the architectures named in the lectures (dlrun/models/named.py)."""

    stem: str = opt("auto", choices=STEMS)  # imagenet: as published; small: 3x3 stride-1 stem; auto: small below 64 px


@dataclass
class NamedDropoutConfig(NamedConfig):
    dropout: float = opt(0.5, ge=0.0, lt=1.0)  # before the fully connected layers, as published


OWN_DROPOUT = "model={name} has its own dropout before its classifier: set model.dropout (published: {p})"
NO_DROPOUT = "model={name} has no dropout (it relies on batch norm); use regularizer=weight_decay or l2"
NAMED = {
    "alexnet": "AlexNet (Krizhevsky et al. 2012): 5 conv, 3 fully connected; 61,100,840 parameters on ImageNet",
    "vgg11": "VGG-11 (configuration A): 8 conv 3x3 + 3 fully connected; 132,863,336 parameters on ImageNet",
    "vgg13": "VGG-13 (configuration B): 10 conv 3x3 + 3 fully connected; 133,047,848 parameters on ImageNet",
    "vgg16": "VGG-16 (configuration D): 13 conv 3x3 + 3 fully connected; 138,357,544 parameters on ImageNet",
    "vgg19": "VGG-19 (configuration E): 16 conv 3x3 + 3 fully connected; 143,667,240 parameters on ImageNet",
    "googlenet": "GoogLeNet / Inception v1 without auxiliary heads; 6,624,904 parameters on ImageNet",
    "resnet18": "ResNet-18, ImageNet form (basic blocks 2-2-2-2); 11,689,512 parameters on ImageNet",
    "resnet34": "ResNet-34, ImageNet form (basic blocks 3-4-6-3); 21,797,672 parameters on ImageNet",
    "resnet50": "ResNet-50, ImageNet form (bottlenecks 3-4-6-3); 25,557,032 parameters on ImageNet",
    "resnet101": "ResNet-101, ImageNet form (bottlenecks 3-4-23-3); 44,549,160 parameters on ImageNet",
    "resnet152": "ResNet-152, ImageNet form (bottlenecks 3-8-36-3); 60,192,808 parameters on ImageNet",
}
for _name, _help in NAMED.items():
    if _name.startswith("resnet"):
        declare("model", _name, NamedConfig, _help, inputs=IMAGES, reads=READS_IMAGES, lacks="pixels",
                no_dropout=NO_DROPOUT.format(name=_name))  # fmt: skip
    else:
        p = 0.2 if _name == "googlenet" else 0.5
        declare("model", _name, NamedDropoutConfig, _help, defaults={"dropout": p}, inputs=IMAGES,
                reads=READS_IMAGES, lacks="pixels", no_dropout=OWN_DROPOUT.format(name=_name, p=p))  # fmt: skip


def fit_reason(name: str, input_kind: str, input_shape: tuple[int, ...]) -> str | None:
    """None when model=NAME reads this kind of input, else a one-line reason (from its declared `inputs`)."""
    c = caps("model", name)
    if input_kind in c.inputs:
        spatial = input_shape[1:]  # (C, L) or (C, H, W): the steps or pixels a convolution slides over
        if c.inputs == GRID and input_kind in GRID and spatial and max(spatial) < 2:
            one = "step" if input_kind == "signal" else "pixel"
            shape = tuple(input_shape)
            return f"it {c.reads}, and each input has a single {one} {shape}: no neighbours to convolve; try model=mlp"
        return None
    what = f"{prod(input_shape)} {input_kind} features" if input_kind == "tabular" else f"{input_kind} inputs"
    readers = ", ".join(f"model={n}" for n in declared_readers(input_kind))
    return f"it {c.reads or 'reads ' + ', '.join(c.inputs)}, and this data has {what} with no {c.lacks}; try {readers}"


def declared_readers(input_kind: str) -> list[str]:
    """The declared models that read this kind of input (not the single units, whose rules suit binary tasks)."""
    return [n for n, d in declared("model").items() if input_kind in d.caps.inputs and not d.caps.implies]
