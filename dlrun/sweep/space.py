"""A sweep's search space: Hydra's sweep grammar, mapped onto Optuna distributions.

    optim=sgd,adam                          CategoricalDistribution(["sgd", "adam"])
    optim.lr=choice(0.01,0.1)               CategoricalDistribution([0.01, 0.1])
    'model.hidden=[16],[32,32]'             CategoricalDistribution(["[16]", "[32,32]"])  (lists travel as text)
    trainer.epochs=range(1,4)               IntDistribution(1, 3)          (Hydra's stop is exclusive)
    optim.momentum=range(0.5,1,0.25)        FloatDistribution(0.5, 0.75, step=0.25)
    optim.lr=interval(0.001,0.1)            FloatDistribution(0.001, 0.1)
    optim.lr=tag(log,interval(1e-4,1e-1))   FloatDistribution(0.0001, 0.1, log=True)
    trainer.batch_size=int(interval(8,64))  IntDistribution(8, 64)
    optim=glob(ada*)                        CategoricalDistribution(["adagrad", "adam", "adamw"])

Overrides that are not sweeps go to every trial unchanged, in the order typed: a group choice
comes before the keys it sets (`optim=sgd,momentum optim.lr=0.01,0.1`). An experiment file may
declare sweeps too, under Hydra's `hydra.sweeper.params`; the command line wins over them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from dlrun.errors import ConfigError

SAMPLERS = ("grid", "random", "tpe")


@dataclass(frozen=True)
class Axis:
    """One swept key: its Optuna distribution, and how a value is written back as an override."""

    name: str  # the Optuna parameter name: the key as typed, without + or ++ (optim.lr, or optim for a group)
    distribution: BaseDistribution
    source: str  # the override as typed, for messages
    prefix: str = ""  # + or ++, kept on the override each trial gets
    texts: tuple[str, ...] = ()  # categorical: the override text of each choice, e.g. "[16]"

    @property
    def continuous(self) -> bool:
        d = self.distribution
        return isinstance(d, FloatDistribution) and d.step is None

    def values(self) -> list[Any]:
        """Every value of a discrete axis, in order."""
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return list(d.choices)
        if self.continuous:
            raise ConfigError(
                f"{self.source}: an interval is continuous and cannot be a grid; use --sampler tpe or random, "
                f"or list values: {self.name}=a,b,c"
            )
        n = round((d.high - d.low) / d.step) + 1
        return [_tidy(d.low + i * d.step) if isinstance(d, FloatDistribution) else d.low + i * d.step for i in range(n)]

    def probes(self) -> list[Any]:
        """The values a sweep composes before it starts: every choice, or the two ends of a range."""
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return list(d.choices)
        high = self.values()[-1] if not self.continuous else d.high
        return [d.low, high] if high != d.low else [d.low]

    def text(self, value: Any) -> str:
        """The override text of a value: `[16]` for a list choice, `0.0031622776601683794` for a float."""
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return self.texts[d.to_internal_repr(value)]
        if isinstance(d, IntDistribution):
            return str(int(value))
        return repr(float(value))

    def override(self, value: Any) -> str:
        return f"{self.prefix}{self.name}={self.text(value)}"


@dataclass(frozen=True)
class Space:
    """The overrides of a sweep in the order typed: a fixed override (text) or a swept Axis."""

    items: tuple[str | Axis, ...]

    @property
    def axes(self) -> list[Axis]:
        return [item for item in self.items if isinstance(item, Axis)]

    @property
    def fixed(self) -> list[str]:
        return [item for item in self.items if isinstance(item, str)]

    @property
    def distributions(self) -> dict[str, BaseDistribution]:
        return {axis.name: axis.distribution for axis in self.axes}

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """The overrides of one configuration: every axis set to its value in params."""
        return [item.override(params[item.name]) if isinstance(item, Axis) else item for item in self.items]

    def grid(self) -> dict[str, list[Any]]:
        """Every value of every axis (the grid sampler's search space); refuses a continuous axis."""
        return {axis.name: axis.values() for axis in self.axes}

    def size(self) -> int | None:
        """The number of configurations in the grid; None when an axis is continuous."""
        if any(axis.continuous for axis in self.axes):
            return None
        return math.prod(len(axis.values()) for axis in self.axes)

    def first(self) -> dict[str, Any]:
        return {axis.name: axis.probes()[0] for axis in self.axes}

    def probe_points(self) -> list[list[str]]:
        """The configurations to compose before starting: the first point, then each probe value of each
        axis (every choice, both ends of a range) with the other axes at their first value."""
        first = self.first()
        points = [self.overrides(first)]
        for axis in self.axes:
            points += [self.overrides({**first, axis.name: v}) for v in axis.probes()[1:]]
        return points


def parse(overrides: list[str]) -> Space:
    """The Space of these overrides (Hydra's grammar); a bad sweep is a ConfigError of one line."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    from dlrun.config.compose import check_lengths

    check_lengths(list(overrides))

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except OverrideParseException as e:
        raise ConfigError(_parse_error(e, list(overrides))) from None
    items: list[str | Axis] = []
    seen: set[str] = set()
    for text, o in zip(overrides, parsed, strict=True):
        if not o.is_sweep_override():
            items.append(text)
            continue
        axis = _axis(o, text)
        if axis.name in seen:
            raise ConfigError(f"{text}: {axis.name} is swept twice; give its values in one override")
        seen.add(axis.name)
        items.append(axis)
    return Space(tuple(items))


def _parse_error(e: Exception, overrides: list[str]) -> str:
    """Why an override does not parse, in one line.

    An --option, a value the shell split and a bare word are said as train says them (`--epochs 3`:
    write trainer.epochs=3); any other override gets Hydra's reason, which names what a sweep got wrong.
    """
    from dlrun.config.compose import _parse_message, _parses

    message = _parse_message(e, overrides, lambda: _key_names(overrides))
    bad = next((o for o in overrides if not _parses(o)), None)
    if bad is None or not message.startswith(f"{bad}: cannot parse override:"):
        return message
    return f"{bad}: cannot parse override: {_reason(bad)}"


def _reason(text: str) -> str:
    """Hydra's reason on its own: `missing a required argument: 'end'`, `unexpected ';' (character 13)`."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        OverridesParser.create().parse_overrides([text])
    except OverrideParseException as e:
        message = str(e)
    else:
        return "Hydra parses it alone"  # not reached: the caller found that it does not
    # "LexerNoViableAltException: TEXT" over a caret under the character the lexer stopped at
    lexer = re.match(r"LexerNoViableAltException: (.*)\n( *)\^", message)
    if lexer:
        at = len(lexer.group(2)) - len("LexerNoViableAltException: ")
        if 0 <= at < len(lexer.group(1)):
            return f"unexpected {lexer.group(1)[at]!r} (character {at + 1})"
    # "Error parsing override 'x=interval(0.1)'" / "TypeError while evaluating ...: missing ... 'end'" / "See ..."
    lines = [line for line in message.splitlines() if line.strip() and not line.startswith("See ")]
    if len(lines) > 1 and lines[0].startswith("Error parsing override"):
        return lines[1].split(": ", 1)[-1]
    return lines[0] if lines else message


def _key_names(overrides: list[str]) -> list[str]:
    """Every config key at the points the parsable overrides reach, each option of a swept group included."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    from dlrun.config.compose import _config_keys

    items: list[str | Axis] = []
    for text in overrides:
        try:
            (o,) = OverridesParser.create().parse_overrides([text])
            items.append(_axis(o, text) if o.is_sweep_override() else text)
        except (OverrideParseException, ConfigError):
            continue
    space = Space(tuple(items))
    first = space.first()
    points = [space.overrides(first)]
    for axis in space.axes:
        if "." not in axis.name:  # the options of a group have keys of their own; a swept value adds none
            points += [space.overrides({**first, axis.name: v}) for v in axis.probes()[1:]]
    keys: list[str] = []
    for point in points:
        keys += [k for k in _config_keys(point) if k not in keys]
    return keys


def _axis(o, text: str) -> Axis:
    from hydra.core.override_parser.types import ChoiceSweep, Glob, IntervalSweep, RangeSweep

    key = o.get_key_element()
    name = key.lstrip("+")
    prefix = key[: len(key) - len(name)]
    sweep = o.value()
    tags = set(getattr(sweep, "tags", set()) or set())
    if tags - {"log"}:
        raise ConfigError(f"{text}: unknown tag {sorted(tags - {'log'})[0]!r}; the only tag a sweep reads is log")
    log = "log" in tags
    if isinstance(sweep, Glob):
        return _categorical(name, prefix, text, _glob(name, sweep, text))
    if isinstance(sweep, ChoiceSweep):
        if log:
            raise ConfigError(f"{text}: tag(log) applies to range(...) and interval(...), not to a list of choices")
        return _categorical(name, prefix, text, list(sweep.list))
    if isinstance(sweep, RangeSweep):
        values = [_tidy(v) for v in o.sweep_iterator()]
        if not values:
            raise ConfigError(f"{text}: the range is empty (Hydra's range(start, stop, step) excludes stop)")
        step = abs(sweep.step)
        if all(isinstance(v, int) for v in (sweep.start, sweep.stop, sweep.step)):
            if log and step != 1:
                raise ConfigError(f"{text}: tag(log) needs a step of 1; use tag(log, int(interval(a,b)))")
            return Axis(name, IntDistribution(min(values), max(values), log=log, step=step), text, prefix)
        if log:
            raise ConfigError(f"{text}: tag(log) does not apply to a float range; use tag(log, interval(a,b))")
        return Axis(name, FloatDistribution(min(values), max(values), step=_tidy(step)), text, prefix)
    if isinstance(sweep, IntervalSweep):
        low, high = sweep.start, sweep.end
        if low >= high:
            raise ConfigError(f"{text}: the interval needs start < end")
        if log and low <= 0:
            raise ConfigError(f"{text}: tag(log) needs a start > 0")
        if isinstance(low, int) and isinstance(high, int):  # int(interval(a,b))
            return Axis(name, IntDistribution(low, high, log=log), text, prefix)
        return Axis(name, FloatDistribution(float(low), float(high), log=log), text, prefix)
    raise ConfigError(f"{text}: this kind of sweep is not supported; use a,b,c / choice / range / interval")


def _categorical(name: str, prefix: str, text: str, values: list[Any]) -> Axis:
    from hydra.core.override_parser.types import Override, QuotedString

    choices, texts = [], []
    for v in values:
        texts.append(Override._get_value_element_as_str(v))
        if isinstance(v, QuotedString):
            v = v.text
        # Optuna stores None, bool, int, float and str; lists and dicts travel as their override text
        choices.append(v if v is None or isinstance(v, bool | int | float | str) else texts[-1])
    if len(set(texts)) != len(texts):
        raise ConfigError(f"{text}: a value is listed twice")
    return Axis(name, CategoricalDistribution(choices), text, prefix, tuple(texts))


def _glob(group: str, sweep, text: str) -> list[str]:
    from dlrun.config import list_options

    groups = list_options()
    if group not in groups:
        raise ConfigError(f"{text}: glob(...) picks options of a config group; choose from: {', '.join(groups)}")
    names = sweep.filter([name for name, _ in groups[group]])
    if not names:
        raise ConfigError(f"{text}: matches no option of {group}")
    return names


def _tidy(x: Any) -> Any:
    """0.30000000000000004 -> 0.3: range steps accumulate rounding error."""
    return float(f"{x:.12g}") if isinstance(x, float) else x


def experiment_sweeps(overrides: list[str]) -> list[str]:
    """The sweeps an experiment file declares under `hydra.sweeper.params` (Hydra's place for them):

    # @package _global_
    hydra:
      sweeper:
        params:
          optim.lr: tag(log, interval(1e-4, 1e-1))
          optim: sgd,adam
    """
    from omegaconf import OmegaConf

    from dlrun.config.compose import conf_dir

    chosen = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+") == "experiment" and "=" in o]
    if not chosen or "," in chosen[-1] or chosen[-1] in ("null", ""):
        return []
    path = conf_dir() / "experiment" / f"{chosen[-1]}.yaml"
    if not path.is_file():
        return []  # compose names the unknown experiment with the valid choices
    params = OmegaConf.select(OmegaConf.load(path), "hydra.sweeper.params") or {}
    return [f"{key}={value}" for key, value in params.items()]


def check(space: Space, compose) -> None:
    """Compose every probe point (raises the first ConfigError), so a typo fails before any trial runs."""
    for point in space.probe_points():
        try:
            compose(point)
        except ConfigError as e:
            floats = [a for a in space.axes if a.continuous and str(e).startswith(a.name + ":")]
            if floats and "integer" in str(e):
                raise ConfigError(f"{e}; an interval of whole numbers is int(interval(a,b))") from None
            raise
