"""Options of the learning algorithm: loss, optimizer, schedule, regularizer, initialization, trainer."""

import os
from dataclasses import dataclass

from dlrun.options.core import FieldError, Option, check_choice, declare, opt, option

MAX_THREADS_PER_CORE = 8

CLASSES = ("binary", "multiclass")


# ----------------------------------------------------------------------------- loss
@dataclass
class LossConfig(Option):
    """Base of the loss options."""

    name: str = "auto"
    # cross_entropy: the target is (1 - eps) one-hot + eps / C uniform (as torch's label_smoothing)
    label_smoothing: float = opt(0.0, ge=0.0, lt=1.0)
    form: str = opt("mean", choices=("mean", "sum"))  # the batch's loss: the mean over its examples, or their sum


@dataclass
class MSELossConfig(LossConfig):
    # mean: 1/K ||y_hat - y||^2 per example, half_sum: 1/2 ||y_hat - y||^2 per example (both averaged over the
    # batch); sum: 1/2 ||y_hat - y||^2 summed over the batch (d2l's squared_loss(...).sum())
    form: str = opt("mean", choices=("mean", "half_sum", "sum"))
    targets: str = opt("pm1", choices=("pm1", "01"))  # a binary task's targets: -1 / +1 (ADALINE) or 0 / 1


declare(
    "loss",
    "auto",
    MSELossConfig,
    "Chosen from the task: cross_entropy (multiclass), bce (binary), mse (regression)",
    tasks=(*CLASSES, "regression"),
)
declare(
    "loss",
    "cross_entropy",
    LossConfig,
    "Categorical cross-entropy on logits: -log softmax(z)_y; d/dz = softmax(z) - 1_y",
    tasks=CLASSES,
)
declare(
    "loss",
    "nll",
    LossConfig,
    "Negative log-likelihood of the softmax output, -log p_y (same value as cross_entropy)",
    tasks=CLASSES,
)
declare(
    "loss",
    "bce",
    LossConfig,
    "Binary cross-entropy -y log s(z) - (1 - y) log(1 - s(z)), from the logit z (stable)",
    tasks=("binary",),
)
declare(
    "loss",
    "mse",
    MSELossConfig,
    "Mean squared error; form=mean: 1/K ||y_hat - y||^2, form=half_sum: 1/2 ||y_hat - y||^2; binary: +-1 targets",
    tasks=("regression", "binary"),
)
declare(
    "loss",
    "perceptron",
    LossConfig,
    "Perceptron criterion: 1 - y z on a mistake (y z <= 0, y in {-1, +1}), else 0; gradient -y x on mistakes",
    tasks=("binary",),
)


# ----------------------------------------------------------------------------- optim
@dataclass
class OptimConfig(Option):
    """Base of the optimizer options."""

    name: str = "sgd"
    lr: float = opt(0.01, gt=0.0, vary=True)  # alpha, the step size
    weight_decay: float = opt(0.0, ge=0.0, vary=True)  # coupled L2 (decoupled for adamw); regularizer=l2: the lecture's
    impl: str = opt("torch", choices=("torch", "lecture"))  # torch.optim, or the lectures' formulas (optim/lecture.py)
    fused: bool = opt(True, hparam=False)  # torch's fused kernel where there is one; false: the default (foreach)


@dataclass
class MomentumConfig(OptimConfig):
    momentum: float = opt(0.9, ge=0.0, lt=1.0, vary=True)  # gamma of the heavy-ball update


@dataclass
class AdagradConfig(OptimConfig):
    eps: float = opt(1e-10, ge=0.0)  # added to the root of G (PyTorch: outside the square root)


@dataclass
class RMSpropConfig(OptimConfig):
    gamma: float = opt(0.9, ge=0.0, lt=1.0, vary=True)  # G = gamma G + (1 - gamma) g^2 (PyTorch calls it alpha)
    eps: float = opt(1e-8, ge=0.0)


@dataclass
class AdamConfig(OptimConfig):
    beta1: float = opt(0.9, ge=0.0, lt=1.0, vary=True)
    beta2: float = opt(0.999, ge=0.0, lt=1.0, vary=True)
    eps: float = opt(1e-8, ge=0.0)  # PyTorch and the paper: m_hat / (sqrt(v_hat) + eps)
    eps_inside_sqrt: bool = False  # the lecture's m_hat / sqrt(v_hat + eps); needs impl=lecture


# what the built-in optimizers say of themselves as members of a vectorized group (see OptimCaps)
GROUPED = {"elementwise": True, "per_member": True}


@dataclass
class NewtonConfig(OptimConfig):
    damping: float = opt(1e-4, ge=0.0)  # theta -= lr (H + damping I)^-1 g, H the exact Hessian by autograd
    max_params: int = opt(5000, ge=1)  # larger models are refused (the Hessian has max_params^2 entries)


declare(
    "optim",
    "gd",
    OptimConfig,
    "Gradient descent: one step per epoch on the whole train split",
    defaults={"lr": 0.1},
    full_batch=True,
    lecture=True,
    **GROUPED,
)
declare(
    "optim",
    "sgd",
    OptimConfig,
    "Mini-batch stochastic gradient descent (trainer.batch_size=1 for one-sample SGD)",
    lecture=True,
    **GROUPED,
)
declare(
    "optim",
    "momentum",
    MomentumConfig,
    "SGD with heavy-ball momentum (equal to theta - alpha g + gamma (theta - theta_prev) while lr is constant)",
    lecture=True,
    **GROUPED,
)
declare("optim", "nesterov", MomentumConfig, "SGD with Nesterov momentum", **GROUPED)
declare(
    "optim",
    "adagrad",
    AdagradConfig,
    "AdaGrad: G += g^2, theta -= alpha g / (sqrt(G) + eps); impl=lecture: alpha g / sqrt(G + eps)",
    lecture=True,
    **GROUPED,
)
declare(
    "optim",
    "rmsprop",
    RMSpropConfig,
    "RMSProp: G = gamma G + (1 - gamma) g^2, theta -= alpha g / (sqrt(G) + eps); impl=lecture: / sqrt(G + eps)",
    defaults={"lr": 0.001},
    lecture=True,
    **GROUPED,
)
declare(
    "optim",
    "adam",
    AdamConfig,
    "Adam with bias correction; eps outside the root as in the paper and PyTorch "
    "(lecture: impl=lecture eps_inside_sqrt=true)",
    defaults={"lr": 0.001},
    lecture=True,
    **GROUPED,
)
declare(
    "optim",
    "adamw",
    AdamConfig,
    "Adam with decoupled weight decay (Loshchilov and Hutter)",
    defaults={"lr": 0.001, "weight_decay": 0.01},
    **GROUPED,
)
declare(
    "optim",
    "newton",
    NewtonConfig,
    "Newton's method: theta -= lr (H + damping I)^-1 g, with the exact Hessian "
    "of the full-batch loss by autograd (small models only)",
    defaults={"lr": 1.0},
    full_batch=True,
    closure=True,
)


# ----------------------------------------------------------------------------- sched
@dataclass
class SchedConfig(Option):
    """Base of the learning-rate schedules."""

    name: str = "constant"
    warmup_steps: int = opt(0, ge=0)  # linear warmup from lr/warmup_steps to lr over this many steps


@dataclass
class StepSchedConfig(SchedConfig):
    milestones: list[float] = opt([0.5, 0.75], gt=0.0, lt=1.0)  # fractions of all steps
    gamma: float = opt(0.1, gt=0.0)  # lr factor at each milestone


@dataclass
class CosineSchedConfig(SchedConfig):
    min_factor: float = opt(0.0, ge=0.0, le=1.0)  # the last lr as a fraction of the first


@dataclass
class InverseTimeSchedConfig(SchedConfig):
    k: float = opt(0.01, ge=0.0)  # alpha_t = alpha_0 / (1 + k t), t in steps


@dataclass
class OneCycleSchedConfig(SchedConfig):
    pct_start: float = opt(0.3, gt=0.0, lt=1.0)  # fraction of the steps spent rising to lr
    div_factor: float = opt(25.0, gt=0.0)  # the first lr is lr / div_factor
    final_div_factor: float = opt(1e4, gt=0.0)  # the last lr is lr / (div_factor * final_div_factor)
    anneal: str = opt("cos", choices=("cos", "linear"))


@dataclass
class PlateauSchedConfig(SchedConfig):
    factor: float = opt(0.1, gt=0.0, lt=1.0)  # lr factor at each reduction
    patience: int = opt(10, ge=0)  # evaluations without improvement of trainer.monitor before a reduction
    threshold: float = opt(1e-4, ge=0.0)  # relative change that counts as an improvement
    cooldown: int = opt(0, ge=0)  # evaluations after a reduction before counting again
    min_factor: float = opt(0.0, ge=0.0, le=1.0)  # the lr never falls below min_factor * lr


declare("sched", "constant", SchedConfig, "Constant learning rate")
declare(
    "sched", "warmup", SchedConfig, "Linear warmup over warmup_steps, then constant", defaults={"warmup_steps": 100}
)
declare("sched", "step", StepSchedConfig, "Multiply the lr by gamma at each milestone (fractions of all steps)")
declare("sched", "cosine", CosineSchedConfig, "Cosine decay from lr to min_factor * lr over all steps")
declare(
    "sched", "inverse_time", InverseTimeSchedConfig, "Robbins-Monro decay alpha_t = alpha_0 / (1 + k t), t in steps"
)
declare(
    "sched",
    "onecycle",
    OneCycleSchedConfig,
    "One cycle: up from lr / div_factor to lr over pct_start of the steps, then down (torch's OneCycleLR)",
)
declare(
    "sched",
    "plateau",
    PlateauSchedConfig,
    "Multiply the lr by factor when trainer.monitor has not improved for patience evaluations (ReduceLROnPlateau)",
)


# ----------------------------------------------------------------------------- regularizer
@dataclass
class RegularizerConfig(Option):
    """Base of the regularizers: a penalty of strength lambda."""

    name: str = "none"
    strength: float = opt(0.0, ge=0.0, vary=True)  # lambda


@dataclass
class L1Config(RegularizerConfig):
    zero_threshold: float = opt(1e-3, ge=0.0)  # weights with |w| below this count as zero in the logged sparsity


@dataclass
class ElasticConfig(L1Config):
    l1_ratio: float = opt(0.5, ge=0.0, le=1.0)  # Omega = lambda (r sum |W| + (1 - r)/2 sum ||W||^2)


@option(
    "regularizer",
    "dropout",
    "Inverted dropout after every hidden activation (mlp, cnn head): drop with probability p, scale survivors "
    "by 1/(1 - p); off in eval",
)
class DropoutRegConfig(Option):
    """Inverted dropout as a regularizer: sets the model's own dropout to p."""

    name: str = ""
    p: float = opt(0.5, ge=0.0, lt=1.0)  # drop probability of each hidden unit; identity at evaluation


LAMBDA = {"strength": 1e-4}
declare("regularizer", "none", RegularizerConfig, "No regularization term")
declare(
    "regularizer",
    "l2",
    RegularizerConfig,
    "L2 as the lecture writes it: lambda/2 sum ||W||^2 over weights only "
    "(no biases, no norm layers); logged as train/reg_loss",
    defaults=LAMBDA,
)
declare(
    "regularizer",
    "weight_decay",
    RegularizerConfig,
    "Decoupled weight decay: each step W <- W - lr (update + lambda W), as in AdamW, weights only; not a loss term",
    defaults=LAMBDA,
)
declare(
    "regularizer",
    "l1",
    L1Config,
    "L1 as the lecture writes it: lambda sum |W| over weights only; logs "
    "weights/sparsity, the fraction of |w| < zero_threshold",
    defaults=LAMBDA,
)
declare(
    "regularizer",
    "elastic",
    ElasticConfig,
    "Elastic net: lambda (r sum |W| + (1 - r)/2 sum ||W||^2) over weights only, r = l1_ratio; logs weights/sparsity",
    defaults=LAMBDA,
)


# ----------------------------------------------------------------------------- init
@dataclass
class TorchInitConfig(Option):
    """init=default: PyTorch's own initialization, biases included (no init.bias: it would not be used)."""

    name: str = "default"


@dataclass
class InitConfig(TorchInitConfig):
    """Base of the named initializations: the weights drawn by the name, every bias set to init.bias."""

    bias: float = 0.0  # every bias is set to this (the lectures start biases at zero)


@dataclass
class NormalInitConfig(InitConfig):
    std: float = opt(0.01, ge=0.0)  # W ~ N(0, std^2)


@dataclass
class UniformInitConfig(InitConfig):
    a: float = opt(0.05, ge=0.0)  # W ~ U[-a, a]


@dataclass
class ConstantInitConfig(InitConfig):
    c: float = 0.1  # every weight equals c (symmetry is never broken)


@dataclass
class OrthogonalInitConfig(InitConfig):
    gain: float = opt(1.0, ge=0.0)  # W = gain Q, Q (semi-)orthogonal


declare(
    "init",
    "default",
    TorchInitConfig,
    "PyTorch's defaults (Kaiming-uniform weights with a = sqrt(5), small uniform biases)",
)
declare(
    "init",
    "glorot_uniform",
    InitConfig,
    "Glorot/Xavier uniform weights U[-t, t], t = sqrt(6 / (fan_in + fan_out)); biases = init.bias (0)",
)
declare(
    "init",
    "glorot_normal",
    InitConfig,
    "Glorot/Xavier normal weights N(0, 2 / (fan_in + fan_out)); biases = init.bias (0)",
)
declare(
    "init",
    "he_uniform",
    InitConfig,
    "He/Kaiming uniform weights U[-t, t], t = sqrt(6 / fan_in), for ReLU nets; biases = init.bias (0)",
)
declare(
    "init", "he_normal", InitConfig, "He/Kaiming normal weights N(0, 2 / fan_in) for ReLU nets; biases = init.bias (0)"
)
declare(
    "init",
    "zeros",
    InitConfig,
    "All weights zero, biases = init.bias: a tanh net sits at a saddle and every unit of "
    "a layer stays identical (the lecture's failure case)",
)
declare("init", "normal", NormalInitConfig, "Gaussian weights N(0, std^2); biases = init.bias (0)")
declare("init", "uniform", UniformInitConfig, "Uniform weights U[-a, a]; biases = init.bias (0)")
declare(
    "init",
    "constant",
    ConstantInitConfig,
    "Every weight equals c, biases = init.bias: symmetry is never broken (the lecture's failure case)",
)
declare(
    "init",
    "orthogonal",
    OrthogonalInitConfig,
    "(Semi-)orthogonal weights scaled by gain (Saxe et al.; each gate "
    "of a recurrent matrix on its own); biases = init.bias (0)",
)


# ----------------------------------------------------------------------------- trainer
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("32", "bf16", "16")
COMPILE = ("false", "default", "reduce-overhead", "max-autotune")


@option("trainer", "default")
class TrainerConfig(Option):
    """30 epochs, batch 32, evaluate every epoch, log every 50 steps"""

    epochs: int = opt(30, ge=1)
    steps: int = opt(0, ge=0)  # if > 0, train for this many optimizer steps instead of `epochs`
    batch_size: int = opt(32, ge=1)  # examples per step (optim=gd uses the whole train split)
    eval_every: int = opt(0, ge=0)  # steps between evaluations on val; 0 = once per epoch
    log_every: int = opt(50, ge=1, hparam=False)  # steps between train/loss, lr, grad/norm and weight-norm scalars
    hist_every: int = opt(500, ge=0, hparam=False)  # steps between weight and gradient histograms; 0 = off
    device: str = opt("auto", hparam=False)  # auto = cuda, then mps, then cpu; or cpu, cuda, cuda:1, mps
    seed: int = opt(0, ge=0, lt=2**32, hparam=False)  # model init, data order and dropout
    order: str = opt("shuffle", choices=("shuffle", "fixed"))  # each epoch reshuffled; fixed: the split's own order
    seeds: list[int] = opt([], ge=0, lt=2**32, hparam=False)  # seeds trained together as one vectorized model
    threads: int = opt(1, ge=0, hparam=False)  # CPU threads for PyTorch; 0 = PyTorch's default (all cores)
    flush_denormal: bool = opt(True, hparam=False)  # CPU: values below 1.2e-38 become 0 (denormals are ~50x slower)
    grad_clip: float = opt(0.0, ge=0.0)  # max global gradient norm; 0 = off
    grad_tol: float = opt(0.0, ge=0.0)  # stop when the gradient norm after a step falls below this; 0 = off
    stop_at_zero_loss: bool = False  # stop after an epoch whose every step had zero loss (perceptron: no mistake)
    monitor: str = "auto"  # metric for `best` and early stopping; auto = val/acc (classification) or val/loss
    patience: int = opt(0, ge=0)  # evaluations without improvement before stopping; 0 = never stop early
    min_delta: float = opt(0.0, ge=0.0)  # smallest change of `monitor` that counts as an improvement
    test_with: str = opt("last", choices=("last", "best"))  # weights for the final test metrics
    checkpoint: bool = opt(True, hparam=False)  # write checkpoints/last.pt and best.pt
    checkpoint_every: float = opt(60.0, ge=0.0, hparam=False)  # seconds between checkpoint writes at evaluations
    progress: str = opt("auto", choices=("auto", "bar", "lines", "none"), hparam=False)  # auto: a bar on a terminal
    diag_every: int = opt(500, ge=0, hparam=False)  # steps between diagnostics (grad norm, update/weight, activations)
    dist_timeout: int = opt(300, ge=1, hparam=False)  # torchrun: seconds a rank waits for the others before failing
    # 32: float32; bf16: autocast to bfloat16 (CPU too); 16: autocast to float16 with a gradient scaler
    precision: str = opt("32", choices=PRECISIONS)
    compile: str = opt("false", choices=COMPILE, hparam=False)  # torch.compile of the model, and its mode
    memory_format: str = opt("auto", choices=("auto", "contiguous", "channels_last"), hparam=False)  # 2-D CNNs
    ema: float = opt(0.0, ge=0.0, lt=1.0)  # decay of an exponential moving average of the weights; 0 = off
    # micro-batches of batch_size per optimizer step: one step on accumulate * batch_size examples (equal to it
    # but for batch norm, whose statistics are of each micro-batch, and dropout, whose masks are drawn per micro-batch)
    accumulate: int = opt(1, ge=1)
    deterministic: bool = opt(False, hparam=False)  # deterministic algorithms; CUDA: cuDNN benchmark off

    def __post_init__(self):
        # the command line's trainer.precision=16 and trainer.compile=false arrive as a number and a boolean
        self.precision = str(self.precision).lower()
        self.compile = str(self.compile).lower()
        super().__post_init__()

    def check(self):
        check_choice("device", self.device.split(":")[0], DEVICES)
        cores = os.cpu_count() or 1
        if self.threads > MAX_THREADS_PER_CORE * cores:  # 100,000 threads crash the interpreter
            raise FieldError(
                "threads",
                f"{self.threads} is more than {MAX_THREADS_PER_CORE} per core of this machine's {cores}; give at most "
                f"{MAX_THREADS_PER_CORE * cores}, or 0 for PyTorch's default (one per core)",
            )
