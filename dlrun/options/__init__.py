"""Every option users pick (`model=mlp`, `optim=adam`), declared once as a typed dataclass (torch-free).

    from dlrun.options import option, opt, schema
    schema("optim", "adam")().lr        # 0.001
    caps("optim", "gd").full_batch       # True

Built-in declarations live in model.py, data.py and train.py; plugins declare theirs with the
same `option` decorator (see the README, "Add an option").
"""

from dlrun.options import data, model, train  # noqa: F401  (the built-in declarations)
from dlrun.options.config import META_KEYS, Config, not_hyperparameters
from dlrun.options.core import (
    GROUPS,
    INPUT_KINDS,
    Caps,
    DataCaps,
    Declaration,
    FieldError,
    LossCaps,
    ModelCaps,
    OptimCaps,
    Option,
    caps,
    check_choice,
    check_range,
    declaration,
    declare,
    declared,
    opt,
    option,
    schema,
    with_cap,
)
from dlrun.options.data import (
    AugmentConfig,
    ClustersConfig,
    DataConfig,
    ImageSetConfig,
    MNIST1DConfig,
    RegressionConfig,
    SequenceConfig,
    SyntheticConfig,
)
from dlrun.options.model import (
    ACTIVATIONS,
    CELLS,
    NORMS,
    POOLS,
    READOUTS,
    CNNConfig,
    MLPConfig,
    ModelConfig,
    ResNetConfig,
    RNNConfig,
)
from dlrun.options.train import (
    AdagradConfig,
    AdamConfig,
    ConstantInitConfig,
    CosineSchedConfig,
    DropoutRegConfig,
    ElasticConfig,
    InitConfig,
    InverseTimeSchedConfig,
    L1Config,
    LossConfig,
    MomentumConfig,
    MSELossConfig,
    NewtonConfig,
    NormalInitConfig,
    OptimConfig,
    OrthogonalInitConfig,
    RegularizerConfig,
    RMSpropConfig,
    SchedConfig,
    StepSchedConfig,
    TrainerConfig,
    UniformInitConfig,
)

__all__ = [
    name for name in dir() if not name.startswith("_") and name not in ("data", "model", "train", "config", "core")
]
