"""The sweep grammar: each Hydra form mapped to its Optuna distribution, values written back as overrides,
and the one-line errors (exit 2) that stop a sweep before any trial runs."""

from __future__ import annotations

import shutil

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from dlrun.config import compose
from dlrun.config.compose import conf_dir
from dlrun.errors import ConfigError
from dlrun.sweep.space import check, experiment_sweeps, parse
from tests.conftest import dlrun


def axis(text: str):
    (only,) = parse([text]).axes
    return only


def hydra_value(override: str):
    """What Hydra reads back from an override: the value a trial's config gets."""
    return OverridesParser.create().parse_overrides([override])[0].value()


def test_simple_choice_of_group_options():
    a = axis("optim=sgd,adam")
    assert a.name == "optim"
    assert a.distribution == CategoricalDistribution(["sgd", "adam"])
    assert [a.override(v) for v in a.values()] == ["optim=sgd", "optim=adam"]


def test_choice_of_numbers_keeps_numbers():
    a = axis("optim.lr=choice(0.01,0.1)")
    assert a.distribution == CategoricalDistribution([0.01, 0.1])
    assert [hydra_value(a.override(v)) for v in a.values()] == [0.01, 0.1]


def test_choice_of_lists_travels_as_override_text():
    a = axis("model.hidden=[16],[32,32]")
    assert a.distribution == CategoricalDistribution(["[16]", "[32,32]"])
    assert [hydra_value(a.override(v)) for v in a.values()] == [[16], [32, 32]]


def test_int_range_excludes_stop_like_python():
    a = axis("trainer.epochs=range(1,8,3)")
    assert a.distribution == IntDistribution(1, 7, step=3)
    assert a.values() == list(range(1, 8, 3))
    assert a.probes() == [1, 7]


def test_float_range_has_a_step_and_no_rounding_noise():
    a = axis("optim.momentum=range(0.1,0.5,0.1)")
    assert isinstance(a.distribution, FloatDistribution) and a.distribution.step == pytest.approx(0.1)
    assert a.values() == [0.1, 0.2, 0.3, 0.4]  # not 0.30000000000000004
    assert not a.continuous


def test_interval_is_a_continuous_float_axis():
    a = axis("optim.lr=interval(0.001,0.1)")
    assert a.distribution == FloatDistribution(0.001, 0.1)
    assert a.continuous and a.probes() == [0.001, 0.1]


def test_tag_log_interval_is_log_uniform():
    a = axis("optim.lr=tag(log, interval(1e-4, 1e-1))")
    assert a.distribution == FloatDistribution(1e-4, 1e-1, log=True)
    value = 0.0031622776601683794  # a value TPE might draw: the override keeps every digit
    assert hydra_value(a.override(value)) == value


def test_int_interval_and_log_int_interval():
    assert axis("trainer.batch_size=int(interval(8,64))").distribution == IntDistribution(8, 64)
    assert axis("trainer.batch_size=tag(log, int(interval(8,64)))").distribution == IntDistribution(8, 64, log=True)
    assert axis("trainer.batch_size=int(interval(8,64))").override(23) == "trainer.batch_size=23"


def test_glob_picks_group_options():
    a = axis("optim=glob(ada*)")
    assert set(a.distribution.choices) == {"adagrad", "adam", "adamw"}


def test_fixed_overrides_keep_their_place_and_prefix():
    space = parse(["data=xor", "optim=sgd,adam", "optim.lr=0.1,0.2", "+x=1,2", "model.hidden=[4]"])
    assert space.fixed == ["data=xor", "model.hidden=[4]"]
    params = {"optim": "adam", "optim.lr": 0.2, "x": 2}
    assert space.overrides(params) == ["data=xor", "optim=adam", "optim.lr=0.2", "+x=2", "model.hidden=[4]"]
    assert space.size() == 8


def test_probe_points_cover_every_choice_and_both_ends():
    space = parse(["optim=sgd,adam,adamw", "optim.lr=interval(0.001,0.1)", "data=xor"])
    points = space.probe_points()
    # the first point, two more optimizers, the other end of the interval
    assert points == [
        ["optim=sgd", "optim.lr=0.001", "data=xor"],
        ["optim=adam", "optim.lr=0.001", "data=xor"],
        ["optim=adamw", "optim.lr=0.001", "data=xor"],
        ["optim=sgd", "optim.lr=0.1", "data=xor"],
    ]
    assert space.size() is None


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["optim.lr=0.1,0.2", "optim.lr=0.3,0.4"], "swept twice"),
        (["optim=tag(log, choice(sgd, adam))"], "tag(log)"),
        (["optim.lr=tag(foo, interval(0.1,1))"], "unknown tag"),
        (["optim.lr=tag(log, interval(0,1))"], "start > 0"),
        (["optim.lr=interval(0.1,0.1)"], "start < end"),
        (["trainer.epochs=range(3,3)"], "empty"),
        (["optim.lr=interval(0.1)"], "cannot parse override"),
        (["model=glob(zzz*)"], "matches no option"),
    ],
)
def test_bad_sweeps_are_one_line_config_errors(overrides, words):
    with pytest.raises(ConfigError, match=None) as e:
        parse(overrides)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_grid_refuses_a_continuous_axis():
    space = parse(["optim.lr=interval(0.001,0.1)"])
    with pytest.raises(ConfigError, match="continuous"):
        space.grid()


def test_check_composes_every_probe_point():
    check(parse(["optim=sgd,adam", "optim.lr=0.01,0.1"]), compose)  # valid: no error
    with pytest.raises(ConfigError, match="momentum"):  # sgd has no momentum key: only that point fails
        check(parse(["optim=momentum,sgd", "optim.momentum=0.5,0.9"]), compose)
    with pytest.raises(ConfigError, match=r"int\(interval"):
        check(parse(["trainer.epochs=interval(1,3)"]), compose)


def test_experiment_file_sweeps_under_hydra_sweeper_params(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    shutil.copytree(conf_dir(), conf)  # follows conf/experiment -> experiments/
    (conf / "experiment" / "lr_search.yaml").write_text(
        "# @package _global_\n"
        "# a learning-rate search on XOR\n"
        "defaults:\n  - override /data: xor\n"
        "hydra:\n  sweeper:\n    params:\n"
        "      optim: sgd,adam\n"
        "      optim.lr: tag(log, interval(1e-4, 1e-1))\n"
    )
    monkeypatch.setenv("DLRUN_CONF", str(conf))
    assert experiment_sweeps(["experiment=lr_search"]) == ["optim=sgd,adam", "optim.lr=tag(log, interval(1e-4, 1e-1))"]
    assert experiment_sweeps(["data=xor"]) == []
    cfg = compose(["experiment=lr_search"])  # `dlrun train experiment=lr_search` ignores the sweep
    assert cfg.data.name == "xor" and cfg.experiment == "lr_search"


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["optim.lr=interval(0.1)"], "optim.lr=interval(0.1)"),  # bad sweep grammar
        (["optim.lrr=0.01,0.1"], "optim.lrr"),  # a typo in a swept key
        (["optim=sgd,adma"], "optim=adma"),  # a typo in a swept option
        (["optim.lr=interval(0.001,0.1)", "--sampler", "grid"], "continuous"),  # grid with a continuous axis
    ],
)
def test_sweep_bad_input_exits_2_with_one_line(args, key, runs):
    result = dlrun("sweep", f"runs_dir={runs}", *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and key in lines[0], result.stderr
    assert not any(runs.iterdir())  # no sweep directory was made
