"""Composition and validation: typos and bad values fail at compose time with one line naming the key."""

from __future__ import annotations

import pytest

from dlrun.config import compose, load_run_config, to_yaml, validate
from dlrun.config.compose import defaults, list_options
from dlrun.errors import ConfigError
from dlrun.options import GROUPS, Config, MLPConfig, TrainerConfig, declared


def test_default_config_is_mlp_on_digits():
    cfg = compose([])
    assert isinstance(cfg, Config)
    assert isinstance(cfg.model, MLPConfig) and cfg.model.hidden == [256, 256]
    assert cfg.data.name == "digits" and cfg.optim.name == "adam" and cfg.loss.name == "auto"
    assert isinstance(cfg.trainer, TrainerConfig)


def test_override_grammar():
    cfg = compose(["model.hidden=[64,64]", "optim=sgd", "optim.lr=3e-3", "trainer.epochs=5", "data=iris"])
    assert cfg.model.hidden == [64, 64]
    assert cfg.optim.name == "sgd" and cfg.optim.lr == pytest.approx(3e-3)
    assert cfg.trainer.epochs == 5 and cfg.data.name == "iris"


def test_linear_preset_is_an_mlp_without_hidden_layers():
    assert compose(["model=linear"]).model.hidden == []


def test_experiment_holds_only_what_it_changes():
    cfg = compose(["experiment=xor_hidden"])
    assert cfg.experiment == "xor_hidden"
    assert cfg.data.name == "xor" and cfg.model.hidden == [8] and cfg.model.activation == "tanh"
    assert cfg.loss.name == "auto"  # untouched groups keep their defaults
    # the command line still wins over the experiment
    assert compose(["experiment=xor_hidden", "model.hidden=[4]"]).model.hidden == [4]


@pytest.mark.parametrize(
    ("overrides", "must_contain"),
    [
        (["model=nope"], ["model=nope", "mlp", "linear"]),
        (["optim=mom"], ["optim=mom", "did you mean 'momentum'", "adam"]),
        (["optim.lr=abc"], ["optim.lr", "'abc'", "float"]),
        (["trainer.epochs=-1"], ["trainer.epochs", "-1", "[1, inf]"]),
        (["model.hidden=[0]"], ["model.hidden", ">= 1"]),
        (["model.hiden=[64]"], ["model.hiden", "did you mean 'hidden'", "valid keys"]),
        (["trainer.epoch=3"], ["trainer.epoch", "did you mean 'epochs'"]),
        (["+model.depth=3"], ["model.depth", "unknown key", "hidden"]),
        (["model.activation=rellu"], ["model.activation", "did you mean 'relu'", "tanh"]),
        (["model.dropout=1.5"], ["model.dropout", "1.5"]),
        (["trainer.device=tpu"], ["trainer.device", "cpu", "cuda"]),
        (["data.val_fraction=0.5", "data.test_fraction=0.5"], ["val_fraction"]),
        (["optim=sgd,adam"], ["optim=sgd,adam", "sweep", "key=[a,b]"]),
        (["model.hidden=[0"], ["cannot parse override"]),
        (["model.hidden=3"], ["model.hidden", "not a list"]),
        (["data=diabetes", "data.noise=1"], ["data.noise", "unknown key"]),
        (["data=xor", "+data.classes=3"], ["data.classes", "unknown key"]),  # xor is binary by definition
        (["loss=cross_entropy", "loss.form=half_sum"], ["loss.form", "choose from: mean, sum"]),  # half_sum: mse only
        (["loss=bce", "+loss.targets=01"], ["loss.targets", "unknown key"]),  # mse on a binary task only
    ],
)
def test_bad_input_is_one_line_naming_the_key(overrides, must_contain):
    with pytest.raises(ConfigError) as err:
        compose(overrides)
    message = str(err.value)
    assert "\n" not in message
    for part in must_contain:
        assert part in message, (part, message)
    assert err.value.exit_code == 2


def test_every_yaml_option_validates():
    """Every option (declared or a preset file) composes and names a declaration."""
    for group, options in list_options().items():
        for option, description in options:
            assert description, f"{group}={option} needs a description (docstring or first-line comment)"
            cfg = compose([f"{group}={option}"])
            if group in GROUPS and group != "trainer":
                assert getattr(cfg, group).name in declared(group)


def test_defaults_mark_the_default_options():
    d = defaults()
    assert d["model"] == "mlp" and d["data"] == "digits" and d["optim"] == "adam" and d["trainer"] == "default"


def test_yaml_round_trip(tmp_path):
    cfg = compose(["model.hidden=[32]", "optim=momentum", "data=moons"])
    (tmp_path / "config.yaml").write_text(to_yaml(cfg))
    again = load_run_config(tmp_path)
    assert again == cfg


def test_resume_overrides_change_values_not_groups(tmp_path):
    (tmp_path / "config.yaml").write_text(to_yaml(compose([])))
    cfg = load_run_config(tmp_path, ["trainer.epochs=8"], resume=True)
    assert cfg.trainer.epochs == 8 and cfg.resume == str(tmp_path)
    with pytest.raises(ConfigError, match="keeps its model"):
        load_run_config(tmp_path, ["model=linear"])
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        load_run_config(tmp_path, ["trainer.epoch=8"])
    with pytest.raises(ConfigError, match="no config.yaml"):
        compose([f"resume={tmp_path / 'missing'}"])


def test_validate_rejects_unknown_top_level_key():
    with pytest.raises(ConfigError, match="unknown top-level key"):
        validate({"modell": {}})


def test_an_activation_asked_for_a_model_without_hidden_layers_is_refused():
    """`model=linear model.activation=step` used to train logistic regression, the activation ignored."""
    from dlrun.config import compose
    from dlrun.errors import ConfigError

    with pytest.raises(ConfigError, match=r"model.activation=step: this model has no hidden layer"):
        compose(["model=linear", "model.activation=step"])
    assert compose(["model.hidden=[8]", "model.activation=step"]).model.activation == "step"
    assert compose(["model=linear"]).model.hidden == []
