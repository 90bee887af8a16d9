"""One declaration per option: every registry matches the declarations, every declared key can be set
from the command line, every declared range is enforced, and declaring stays torch-free."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from dlrun import options
from dlrun.config import compose
from dlrun.errors import ConfigError
from dlrun.options import GROUPS, FieldError, declared
from tests.conftest import leaves


def registries() -> dict[str, set[str]]:
    """The builders each group registers on the torch side, by name."""
    from dlrun import init, losses, models, regularizers
    from dlrun.data import DATASETS, build
    from dlrun.optim import LECTURE, OPTIMIZERS, SCHEDULES

    build(compose(["data=iris"]).data)  # the data modules register their sets when first used
    return {
        "model": set(models.MODELS),
        "data": set(DATASETS),
        "loss": set(losses.LOSSES) | {"auto"},  # auto resolves to one of the others
        "optim": set(OPTIMIZERS),
        "optim.impl=lecture": set(LECTURE),
        "sched": set(SCHEDULES),
        "regularizer": set(regularizers.REGULARIZERS),
        "init": set(init.INITS),
    }


def test_every_declared_option_has_a_builder_and_every_builder_a_declaration():
    built = registries()
    for group in GROUPS:
        if group != "trainer":
            assert built[group] == set(declared(group)), group
    assert built["optim.impl=lecture"] == set(options.with_cap("optim", "lecture"))


def test_every_declaration_describes_itself_and_composes():
    for group in GROUPS:
        for name, decl in declared(group).items():
            assert decl.help and "\n" not in decl.help, f"{group}={name}"
            cfg = getattr(compose([f"{group}={name}"]), group)
            assert isinstance(cfg, decl.schema)
            if group != "trainer":
                assert cfg.name == name


# ----------------------------------------------------------------------------- every key from the command line
def candidates(f, default):
    """Values other than the default, in the field's type, for the override test to try in turn."""
    meta = dict(f.metadata)
    if "choices" in meta:
        return [c for c in meta["choices"] if c != default]
    if isinstance(default, bool):
        return [not default]
    if isinstance(default, int):
        return [default + 1, default + 2, default + 6, max(default - 1, 0), 2 * default]  # 2x: a multiple (heads)
    if isinstance(default, float):
        return [default / 2, default + 0.1, default * 2 + 1e-3, 0.5 if default != 0.5 else 0.25]
    if isinstance(default, list):
        if not default:
            return [[1], [8, 8], [0.5]]
        step = 1 if isinstance(default[0], int) else None
        return [[v + 1 for v in default], default[:1]] if step else [[v / 2 for v in default], default[:1]]
    if isinstance(default, str):
        absolute = {"path": ["/data/my.csv"], "labels": ["/data/y.npy"]}  # files: paths are made absolute
        return {"device": ["cpu", "cuda:1"], "monitor": ["val/loss"], **absolute}.get(f.name, ["other"])
    return []


def hydra_value(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    return repr(value) if isinstance(value, float) else str(value)


def settable(schema: type, key: str, value) -> bool:
    """Whether the schema itself accepts the value (ranges and cross-field checks)."""
    head, _, tail = key.partition(".")
    try:
        if tail:
            nested = type(getattr(schema(), head))
            schema(**{head: nested(**{tail: value})})
        else:
            schema(**{key: value})
    except FieldError:
        return False
    return True


OPTIONS = [(group, name) for group in GROUPS for name in declared(group)]


def override_values(group: str, name: str) -> dict[str, object]:
    """A valid value other than the default for every leaf key of one option."""
    schema, values = options.schema(group, name), {}
    for key, f, default in leaves(schema):
        valid = [v for v in candidates(f, default) if v != default and settable(schema, key, v)]
        assert valid, f"no valid non-default value found for {group}={name} {key}"
        values[key] = valid[0]
    return values


def test_the_cases_cover_every_group_and_every_key():
    assert {g for g, _ in OPTIONS} == set(GROUPS)
    assert sum(len(override_values(g, n)) for g, n in OPTIONS) > 150


@pytest.mark.parametrize(("group", "name"), OPTIONS, ids=[f"{g}={n}" for g, n in OPTIONS])
def test_every_key_of_every_option_can_be_overridden(group, name):
    values = override_values(group, name)
    try:  # all keys at once; where their combination breaks a cross-field check, one key at a time
        batches = [values] if settable_all(options.schema(group, name), values) else [{k: v} for k, v in values.items()]
    except TypeError:
        batches = [{k: v} for k, v in values.items()]
    for batch in batches:
        cfg = compose([f"{group}={name}", *(f"{group}.{k}={hydra_value(v)}" for k, v in batch.items())])
        for key, value in batch.items():
            node = getattr(cfg, group)
            for part in key.split("."):
                node = getattr(node, part)
            assert node == (pytest.approx(value) if isinstance(value, float) else value), (group, name, key)


def settable_all(schema: type, values: dict[str, object]) -> bool:
    nested: dict[str, dict[str, object]] = {}
    flat = {}
    for key, value in values.items():
        head, _, tail = key.partition(".")
        if tail:
            nested.setdefault(head, {})[tail] = value
        else:
            flat[key] = value
    try:
        defaults = schema()
        schema(**flat, **{h: type(getattr(defaults, h))(**kv) for h, kv in nested.items()})
    except FieldError:
        return False
    return True


# ----------------------------------------------------------------------------- ranges
def bad_values(f, default) -> list:
    """Values just outside the field's declared range (and NaN for floats)."""
    meta = dict(f.metadata)
    scalar = default[0] if isinstance(default, list) and default else default
    integer = isinstance(scalar, int)
    bad = [] if integer else [math.nan, math.inf] if isinstance(scalar, float) else []
    if "ge" in meta:
        bad.append(meta["ge"] - (1 if integer else 1e-9))
    if "gt" in meta:
        bad.append(meta["gt"])
    if "le" in meta:
        bad.append(meta["le"] + (1 if integer else 1e-9))
    if "lt" in meta:
        bad.append(meta["lt"])
    return [[v] if isinstance(default, list) else v for v in bad]


def test_every_declared_range_is_enforced():
    checked = 0
    for group, name in OPTIONS:
        schema = options.schema(group, name)
        for key, f, default in leaves(schema):
            if "." in key:
                continue
            for value in bad_values(f, default):
                with pytest.raises(FieldError) as e:
                    schema(**{key: value})
                assert e.value.key == key, (group, name, key, value)
                checked += 1
    assert checked > 100


@pytest.mark.parametrize(
    "override",
    [
        "optim.lr=0",
        "optim.lr=nan",
        "trainer.epochs=0",
        "model.dropout=1.0",
        "data.val_fraction=inf",
        "model.hidden=[0]",
    ],
)
def test_an_out_of_range_override_names_its_key(override):
    with pytest.raises(ConfigError, match=override.split("=")[0]):
        compose([override])


# ----------------------------------------------------------------------------- declaring
def test_capabilities_are_typed_and_names_unique():
    with pytest.raises(TypeError, match="unknown capability 'input'"):

        @options.option("model", "typo_caps", input=("tabular",))
        class Typo(options.ModelConfig):
            """A model with a misspelt capability."""

    with pytest.raises(ValueError, match="declared twice"):
        options.declare("optim", "adam", options.OptimConfig, "a second adam")
    assert "typo_caps" not in declared("model")


def test_not_hyperparameters_come_from_the_declarations():
    keys = options.not_hyperparameters()
    assert {"trainer.seed", "trainer.threads", "trainer.progress", "runs_dir", "name"} <= keys
    assert not keys & {"optim.lr", "trainer.epochs", "model.hidden", "trainer.batch_size"}


def test_declarations_and_composition_do_not_import_torch():
    code = (
        "import sys\n"
        "from dlrun.config import compose, list_options\n"
        "compose(['model=cnn', 'optim=sgd']); list_options()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_summary_of_a_downloadable_set_uses_its_declared_shape_and_downloads_nothing(tmp_path):
    env = {**__import__("os").environ, "DLRUN_DATA": str(tmp_path / "cache"), "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "dlrun", "summary", "model=resnet20", "data=cifar10"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "total parameters: 269,722" in result.stdout  # ResNet-20's 0.27M (He et al. 2016)
    assert "input (3, 32, 32) (image) -> 10 classes" in result.stdout
    assert not (tmp_path / "cache").exists()


def test_a_preset_of_ones_own_on_the_search_path_composes(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "narrow.yaml").write_text("# A narrow MLP\ndefaults:\n  - mlp\n  - _self_\nhidden: [7]\n")
    cfg = compose([f"hydra.searchpath=[file://{tmp_path}]", "model=narrow", "model.activation=tanh"])
    assert cfg.model.name == "mlp" and cfg.model.hidden == [7] and cfg.model.activation == "tanh"
