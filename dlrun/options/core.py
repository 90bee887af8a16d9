"""Option declarations: one typed dataclass per option, with its fields, ranges and capabilities.

An option is what users pick with `group=name` (`model=mlp`, `optim=adam`). It is declared once:

    @option("optim", "adam", lecture=True)
    class AdamConfig(OptimConfig):
        '''Adam with bias correction'''            # the description `dlrun list` shows
        beta1: float = opt(0.9, ge=0.0, lt=1.0)    # default and valid range in one place

The declaration is registered in Hydra's ConfigStore by dlrun.config, so a YAML file is only
needed for presets, and a builder on the torch side registers against the same name. This module
imports neither torch nor Hydra.
"""

import math
import sys
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any

from dlrun.errors import suggest

GROUPS = ("model", "data", "loss", "optim", "sched", "regularizer", "init", "trainer")
INPUT_KINDS = ("tabular", "signal", "image")
INT64 = (-(2**63), 2**63 - 1)  # the integers a tensor, a seed or a step counter holds


class FieldError(ValueError):
    """A value outside its valid range; `key` is the field name inside its group."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key
        self.message = message


# ----------------------------------------------------------------------------- capabilities
@dataclass(frozen=True)
class Caps:
    """What an option can do, as data the trainer and the checks read (no side tables)."""


@dataclass(frozen=True)
class ModelCaps(Caps):
    inputs: tuple[str, ...] = INPUT_KINDS  # the input kinds the model reads
    reads: str = ""  # what it reads, for the refusal: "model=rnn does not fit ...: it <reads>"
    lacks: str = "order to read"  # what other inputs lack: "... this data has 4 tabular features with no <lacks>"
    dropout: str = ""  # where regularizer=dropout puts its masks ("" = the model has no dropout)
    no_dropout: str = ""  # why not, and what to use instead, when dropout is ""
    # overrides that model=NAME brings unless the command line sets the same key or group (its training rule)
    implies: tuple[str, ...] = ()


@dataclass(frozen=True)
class DataCaps(Caps):
    download: bool = False  # files are downloaded on first use
    local: bool = False  # read from the user's own copy (data.path); its declared shape serves `dlrun summary`
    shape: tuple[int, ...] = ()  # one example's shape, known without loading the data ((C, H, W) for images)
    input_kind: str = ""  # tabular | signal | image, when known without loading
    classes: int = 0  # number of classes, when known without loading
    task: str = ""  # classification or regression, when known without loading (classes > 0: classification)


@dataclass(frozen=True)
class LossCaps(Caps):
    tasks: tuple[str, ...] = ()  # task kinds the loss accepts: binary, multiclass, regression


@dataclass(frozen=True)
class OptimCaps(Caps):
    full_batch: bool = False  # one step per epoch on the whole train split
    closure: bool = False  # step() needs a closure that recomputes the loss (Newton)
    lecture: bool = False  # has a lecture form (optim.impl=lecture)
    # each element's update reads only its own gradient and state, so one optimizer steps the stacked
    # tensors of a vectorized group's members (trainer.seeds) when they share every hyperparameter
    elementwise: bool = False
    # a stacked step (dlrun/optim/stacked.py) takes one value per member of its vary=True keys (optim.lr=[...])
    per_member: bool = False


CAPS: dict[str, type[Caps]] = {"model": ModelCaps, "data": DataCaps, "loss": LossCaps, "optim": OptimCaps}


# ----------------------------------------------------------------------------- fields
def opt(
    default: Any = MISSING,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple[str, ...] | None = None,
    hparam: bool = True,
    vary: bool = False,
    per_layer: bool = False,
) -> Any:
    """A field with its default and valid range: `lr: float = opt(0.01, gt=0.0)`.

    Ranges apply to every element of a list. `choices` lists the valid strings. `hparam=False`
    marks a key that does not change what a run learns (threads, progress, seed), so runs that
    differ only there are repeats of one configuration. `vary=True` marks a number that may differ
    between the members of one vectorized group (`optim.lr=[0.1,0.01]`: one value per member).
    `per_layer=True`: a choice per layer, written `[relu,tanh]` on the command line and kept as "relu,tanh".
    """
    meta = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, "hparam": hparam, "vary": vary or None}
    meta["per_layer"] = per_layer or None  # a string of choices, one per layer: "relu,tanh" (or one for all)
    meta = {k: v for k, v in meta.items() if v is not None}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        hint = f" did you mean '{value.lower()}'?" if str(value).lower() in choices else suggest(value, choices)
        raise FieldError(key, f"'{value}' is not valid;{hint} choose from: {', '.join(choices)}")


def unrepresentable(value: float) -> str:
    """Why a number is no value for any key ("" when it is one): NaN, inf, or an integer past 64 bits."""
    if isinstance(value, float) and not math.isfinite(value):
        return "is not a finite number"
    if isinstance(value, int) and not INT64[0] <= value <= INT64[1]:  # what torch and numpy take as an integer
        return "does not fit in 64 bits"
    return ""


def check_range(
    key: str,
    value: float,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> None:
    if isinstance(value, float) and (why := unrepresentable(value)):
        raise FieldError(key, f"{value} {why}")
    if _outside(value, lo, hi, lo_open, hi_open):
        raise FieldError(key, f"{value} is out of range; valid: {_span(lo, hi, lo_open, hi_open)}")
    if why := unrepresentable(value):  # an integer within its declared range and past 64 bits
        lo, lo_open = (INT64[0], False) if lo is None or lo < INT64[0] else (lo, lo_open)
        hi, hi_open = (INT64[1], False) if hi is None or hi > INT64[1] else (hi, hi_open)
        raise FieldError(key, f"{value} {why}; valid: {_span(lo, hi, lo_open, hi_open)}")


def _outside(value: float, lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> bool:
    return (lo is not None and (value < lo or (lo_open and value == lo))) or (
        hi is not None and (value > hi or (hi_open and value == hi))
    )


def _span(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"
    return f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"


def check_field(key: str, value: Any, meta: dict[str, Any]) -> None:
    """The declared range and choices of one field (of each element of a list)."""
    values = value if isinstance(value, list | tuple) else [value]
    if meta.get("per_layer") and isinstance(value, str):
        values = value.split(",")
    for i, v in enumerate(values):
        if "choices" in meta:
            check_choice(key, v, meta["choices"])
        elif isinstance(v, float | int) and not isinstance(v, bool):
            lo, hi = meta.get("gt", meta.get("ge")), meta.get("lt", meta.get("le"))
            try:
                check_range(key, v, lo, hi, lo_open="gt" in meta, hi_open="lt" in meta)
            except FieldError as e:
                if values is not value:
                    raise
                at = f"{v} at position {i}"  # a list names the element
                nonfinite = isinstance(v, float) and not math.isfinite(v)
                if not nonfinite and _outside(v, lo, hi, "gt" in meta, "lt" in meta):
                    # and the bound: "0 at position 1 must be >= 1"
                    bounds = [f"{'>' if 'gt' in meta else '>='} {lo}"] if lo is not None else []
                    bounds += [f"{'<' if 'lt' in meta else '<='} {hi}"] if hi is not None else []
                    raise FieldError(key, f"{at} must be {' and '.join(bounds)}") from None
                raise FieldError(key, f"{at} {e.message.removeprefix(f'{v} ')}") from None


class Option:
    """Base of every declaration: __post_init__ checks the declared ranges, then `check()`."""

    def __post_init__(self):
        for f in fields(self):
            check_field(f.name, getattr(self, f.name), dict(f.metadata))
        self.check()

    def check(self) -> None:
        """Checks across fields (a subclass extends it with super().check())."""


# ----------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class Declaration:
    group: str
    name: str
    schema: type
    help: str
    caps: Caps


_OPTIONS: dict[str, dict[str, Declaration]] = {g: {} for g in GROUPS}


def option(group: str, name: str, help: str = "", *, defaults: dict[str, Any] | None = None, **caps: Any):
    """Class decorator: declare option `group=name` (the class becomes a dataclass).

    help: one line for `dlrun list` (default: the class docstring's first line);
    defaults: new defaults for inherited fields (`defaults={"lr": 0.1}`), keeping their ranges;
    caps: the group's capabilities (ModelCaps, DataCaps, LossCaps, OptimCaps).
    """

    def wrap(cls: type) -> type:
        doc = cls.__dict__.get("__doc__")
        schema = _dataclass(cls, name if group != "trainer" else None, defaults or {})
        return _register(group, name, schema, help or (doc or "").strip().split("\n")[0], caps)

    return wrap


def declare(group: str, name: str, base: type, help: str, *, defaults: dict[str, Any] | None = None, **caps: Any):
    """Declare an option whose fields are `base`'s, with its own name, defaults and capabilities."""
    module = sys._getframe(1).f_globals.get("__name__", base.__module__)  # the declaring module, for errors
    cls = type(_class_name(name), (base,), {"__module__": module, "__doc__": help})
    return option(group, name, help, defaults=defaults, **caps)(cls)


def _class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_")) + "Config"


def _dataclass(cls: type, name: str | None, defaults: dict[str, Any]) -> type:
    own = dict(cls.__dict__.get("__annotations__", {}))
    inherited = {f.name: f for f in fields(cls)} if is_dataclass(cls) else {}
    new: dict[str, Any] = {}
    if name is not None:
        new["name"] = str
        cls.name = name
    for key, value in defaults.items():
        if key not in inherited and key not in own:
            raise TypeError(f"{cls.__name__}: defaults names '{key}', which is not a field")
        base = inherited.get(key)
        if base is not None:
            new[key] = base.type
            meta = dict(base.metadata)
            if isinstance(value, list | dict):
                setattr(cls, key, field(default_factory=lambda v=value: type(v)(v), metadata=meta))
            else:
                setattr(cls, key, field(default=value, metadata=meta))
        else:
            setattr(cls, key, value)
    cls.__annotations__ = {**new, **own}
    return dataclass(cls)


def _register(group: str, name: str, schema: type, help: str, caps: dict[str, Any]) -> type:
    if group not in _OPTIONS:
        raise ValueError(f"option {name}: unknown group '{group}'; choose from: {', '.join(GROUPS)}")
    caps_type = CAPS.get(group, Caps)
    known = {f.name for f in fields(caps_type)}
    if set(caps) - known:
        bad = sorted(set(caps) - known)[0]
        raise TypeError(f"{group}={name}: unknown capability '{bad}'; valid: {', '.join(sorted(known)) or 'none'}")
    old = _OPTIONS[group].get(name)
    ident = (schema.__module__, schema.__qualname__)
    # the same module imported again (a plugin reloaded) replaces its own declaration
    if old is not None and (old.schema.__module__, old.schema.__qualname__) != ident:
        raise ValueError(f"{group}={name} is declared twice ({old.schema.__module__} and {schema.__module__})")
    decl = Declaration(group, name, schema, help, caps_type(**caps))
    _OPTIONS[group][name] = decl
    schema.declaration = decl  # not a field: dataclass fields need an annotation
    return schema


def declared(group: str) -> dict[str, Declaration]:
    """The declared options of a group, by name."""
    return dict(sorted(_OPTIONS[group].items()))


def declaration(group: str, name: str) -> Declaration:
    """The declaration of `group=name`; a ConfigError-ready FieldError names the valid choices."""
    options = _OPTIONS[group]
    if name not in options:
        names = sorted(options)
        raise FieldError("name", f"unknown '{name}';{suggest(str(name), names)} choose from: {', '.join(names)}")
    return options[name]


def schema(group: str, name: str) -> type:
    """The dataclass of `group=name` (`schema("optim", "adam")(lr=0.01)`)."""
    return declaration(group, name).schema


def caps(group: str, name: str) -> Any:
    """The capabilities of `group=name` (ModelCaps, OptimCaps, ...)."""
    return declaration(group, name).caps


def with_cap(group: str, cap: str) -> list[str]:
    """Names of the group's options whose capability `cap` is set (`with_cap("optim", "lecture")`)."""
    return [n for n, d in declared(group).items() if getattr(d.caps, cap)]
