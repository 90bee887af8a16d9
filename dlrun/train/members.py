"""The members of a vectorized group: which runs `dlrun train` trains together in one process.

    dlrun train 'trainer.seeds=[0,1,2,3]'                       4 members, one configuration
    dlrun train 'optim.lr=[0.1,0.01]' 'trainer.seeds=[0,1]'     4 members: 2 configurations x 2 seeds

A list given to a key declared with `vary=True` (optim.lr, optim.weight_decay, optim.momentum,
optim.gamma, optim.beta1, optim.beta2, regularizer.strength) gives one value per configuration;
lists of several such keys pair up (they need the same length). Every configuration runs once
per seed of `trainer.seeds` (or at `trainer.seed`). A member is the single run it would have
been alone: its config has its own values, `trainer.seed=k` and no `trainer.seeds`.

This module reads the declarations only (no torch), so the CLI can refuse a bad group at once.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from pathlib import Path

from dlrun import options
from dlrun.config import Config
from dlrun.errors import ConfigError
from dlrun.options.core import FieldError, check_field


@dataclass
class MemberSpec:
    cfg: Config  # the member's own config, a single run's
    overrides: list[str]  # how to rerun the member alone: dlrun train OVERRIDES
    label: str  # its run directory's name inside the group: seed0, lr0.1-seed0, ...
    configuration: int  # index of its configuration (members that differ only in the seed share it)
    values: dict[str, float]  # its varied values ({} when only the seeds differ)
    run_dir: Path | None = None  # where its run goes; None: <group>/<label>


def varying_keys() -> list[str]:
    """Flat keys (`optim.lr`) that some declaration marks vary=True, in declaration order."""
    keys: list[str] = []
    for group in options.GROUPS:
        for decl in options.declared(group).values():
            for f in fields(decl.schema):
                key = f"{group}.{f.name}"
                if f.metadata.get("vary") and key not in keys:
                    keys.append(key)
    return keys


def _list_value(text: str) -> list | None:
    """The values of an override's right-hand side when it is a list `[a,b,...]` of numbers, else None."""
    text = text.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return None
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    # Hydra's grammar, as compose reads the value: YAML would take 1e-3, inf and nan for strings
    try:
        (o,) = OverridesParser.create().parse_overrides([f"key={text}"])
    except HydraException:
        return None
    values = None if o.is_sweep_override() else o.value()
    if not isinstance(values, list) or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return None
    return values


def split(overrides: list[str]) -> tuple[list[str], dict[str, list[float]]]:
    """(the overrides every member shares, {varied key: its values}): list values of vary=True keys come out."""
    vary = set(varying_keys())
    shared, varied = [], {}
    for o in overrides:
        key, sep, value = o.partition("=")
        values = _list_value(value) if sep else None
        if values is not None and key.lstrip("+") in vary:
            if not values:
                raise ConfigError(f"{o}: an empty list; give one value per configuration, e.g. {key}=[0.1,0.01]")
            try:
                check_field(key.lstrip("+"), values, {})  # NaN, inf or past 64 bits, named by position
            except FieldError as e:
                raise ConfigError(f"{e.key}: {e.message}") from None
            varied[key.lstrip("+")] = [float(v) for v in values]
        else:
            shared.append(o)
    return shared, varied


def scalar_list_error(overrides: list[str]) -> None:
    """A list given to a number that may not vary: say which keys may (called when composing failed)."""
    from dlrun.config import compose

    scalars = [o for o in overrides if _list_value(o.partition("=")[2]) is None]
    try:
        cfg = compose(scalars)
    except ConfigError:
        return  # something else is wrong too: let the first error speak
    for o in overrides:
        key, sep, value = o.partition("=")
        group, _, name = key.lstrip("+").partition(".")
        node = getattr(cfg, group, None)
        if not sep or _list_value(value) is None or node is None or not hasattr(node, name):
            continue
        if isinstance(getattr(node, name), int | float) and not isinstance(getattr(node, name), bool):
            raise ConfigError(
                f"{o}: {key} takes one value per run; the members of one group may differ only in "
                f"{', '.join(varying_keys())} (and trainer.seeds); sweep the others: dlrun sweep '{key}=...'"
            )


def is_group(cfg: Config, varied: dict[str, list[float]]) -> bool:
    return bool(cfg.trainer.seeds) or bool(varied)


def refusal(cfg: Config) -> str | None:
    """Why this config cannot train as a vectorized group (None when it can): what its options declare."""
    optim = options.caps("optim", cfg.optim.name)
    if optim.closure:
        return f"optim={cfg.optim.name} steps with the exact Hessian of one model at a time"
    if not optim.elementwise:
        return (
            f"optim={cfg.optim.name} does not declare an elementwise update (elementwise=True), "
            "so one optimizer cannot step the members together"
        )
    if cfg.backprop == "manual":
        return "backprop=manual runs the lecture's per-layer boxes on one model"
    if cfg.resume is not None:
        return "a resumed single run keeps its one seed (resume the group's folder to resume a group)"
    return trainer_refusal(cfg)


def trainer_refusal(cfg: Config) -> str | None:
    """The trainer options a group does not take (dlrun/train/trainer_options.py); ema and accumulate it does."""
    t = cfg.trainer
    if str(t.precision) != "32":
        return f"trainer.precision={t.precision}: a group trains in float32 (its batched kernels round unlike a run's)"
    if str(t.compile) != "false":
        return f"trainer.compile={t.compile}: a group's stacked forward is not compiled"
    if t.memory_format == "channels_last":
        return "trainer.memory_format=channels_last: a group's convolutions run stacked in their own layout"
    if cfg.sched.name == "plateau":
        return "sched=plateau lowers each run's lr on its own metric; a group's members share one schedule"
    return None


def per_member_refusal(cfg: Config, keys) -> str | None:
    """Why the members cannot take their own values of `keys` (None when they can)."""
    optim_keys = [k for k in keys if k.startswith("optim.")]
    if optim_keys and not options.caps("optim", cfg.optim.name).per_member:
        return (
            f"optim={cfg.optim.name} has no per-member step (per_member=True, dlrun/optim/stacked.py) "
            f"for one value of {optim_keys[0]} per member"
        )
    return None


def packable(a: Config, b: Config) -> str | None:
    """Why runs a and b cannot train in one vectorized group (None when they can).

    They may differ only in the seed and the keys declared vary=True; each must train as a group.
    """
    from dlrun.config import flat

    for cfg in (a, b):
        if why := refusal(cfg):
            return why
    skip = {*varying_keys(), "trainer.seed", "trainer.seeds"}
    fa, fb = flat(a), flat(b)
    for key in sorted(set(fa) | set(fb)):
        if key not in skip and fa.get(key) != fb.get(key):
            return f"{key} differs ({fa.get(key)} and {fb.get(key)})"
    return per_member_refusal(a, [k for k in skip if fa.get(k) != fb.get(k) and not k.startswith("trainer.")])


def _fmt(value: float) -> str:
    return f"{value:g}"


def members(cfg: Config, shared: list[str], varied: dict[str, list[float]]) -> list[MemberSpec]:
    """The member configs of a group: each configuration of `varied` at each seed."""
    why = refusal(cfg) or per_member_refusal(cfg, list(varied))
    if why:
        raise ConfigError(f"trainer.seeds / list values: cannot train these runs as one vectorized group: {why}")
    lengths = {k: len(v) for k, v in varied.items()}
    if len(set(lengths.values())) > 1:
        given = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        raise ConfigError(f"{given} values: give every varied key the same number of values (one per configuration)")
    seeds = list(cfg.trainer.seeds) or [cfg.trainer.seed]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"trainer.seeds={seeds}: a seed appears twice; give distinct seeds")
    n_conf = next(iter(lengths.values()), 1)
    base = [o for o in shared if o.partition("=")[0].lstrip("+") not in ("trainer.seeds", "trainer.seed")]
    out = []
    for i in range(n_conf):
        values = {k: v[i] for k, v in varied.items()}
        for seed in seeds:
            member = copy.deepcopy(cfg)
            member.trainer.seeds = []
            member.trainer.seed = seed
            for key, value in values.items():
                group, name = key.split(".", 1)
                node = getattr(member, group)
                if not hasattr(node, name):
                    chosen = getattr(node, "name", group)
                    raise ConfigError(f"{key}: {group}={chosen} has no key {name}")
                meta = {f.name: f.metadata for f in fields(type(node))}[name]
                try:
                    check_field(name, value, meta)
                except FieldError as e:
                    raise ConfigError(f"{group}.{e.key}={_fmt(value)}: {e.message}") from None
                setattr(node, name, value)
            label = "-".join([*(f"{k.split('.')[-1]}{_fmt(v)}" for k, v in values.items()), f"seed{seed}"])
            rerun = [*base, *(f"{k}={_fmt(v)}" for k, v in values.items()), f"trainer.seed={seed}"]
            out.append(MemberSpec(member, rerun, label, i, values))
    labels = [m.label for m in out]
    if len(set(labels)) != len(labels):
        twice = next(label for label in labels if labels.count(label) > 1)
        raise ConfigError(f"two members would be the same run ({twice}); give each configuration its own values")
    return out


def resumed_group(overrides: list[str]) -> Path | None:
    """The group folder named by `resume=DIR` when DIR holds a group (its summary.json has kind "group")."""
    from dlrun.train.summary import is_group

    given = [o.split("=", 1)[1] for o in overrides if o.startswith("resume=")]
    if not given or given[-1] == "null":
        return None
    path = Path(given[-1])
    return path if is_group(path) else None


def from_group(group_dir, overrides: list[str]) -> list[MemberSpec]:
    """The members of a group folder, from their config.yaml, with `overrides` (e.g. trainer.epochs) applied;
    each member resumes from its own folder (cfg.resume)."""
    import yaml

    from dlrun.config import load_run_config
    from dlrun.train.summary import read

    group_dir = Path(group_dir)
    summary = read(group_dir)
    rest = [o for o in overrides if not o.startswith("resume=")]
    specs, index = [], {}
    for m in summary["members"] if summary is not None else []:
        run_dir = group_dir / m["label"]
        cfg = load_run_config(run_dir, rest)
        cfg.resume = str(run_dir)
        try:
            rerun = yaml.safe_load((run_dir / "overrides.yaml").read_text()) or []
        except OSError:
            rerun = []
        values = {k: float(v) for k, v in m.get("values", {}).items()}
        conf = index.setdefault(tuple(sorted(values.items())), len(index))
        specs.append(MemberSpec(cfg, list(rerun), m["label"], conf, values, run_dir=run_dir))
    if not specs:
        raise ConfigError(f"resume={group_dir}: the group lists no members")
    return specs


def parse(overrides: list[str]) -> Config | list[MemberSpec]:
    """What `dlrun train OVERRIDES` trains: one run's config, or the members of a group (trainer.seeds, list
    values of vary=True keys, or resume=<a group's folder>). Refusals are ConfigErrors, before any work."""
    from dlrun.config import compose

    shared, varied = split(list(overrides))
    group_dir = resumed_group(shared)
    if group_dir is not None:
        return from_group(group_dir, shared)
    try:
        cfg = compose(shared)
    except ConfigError:
        scalar_list_error(shared)  # a list given to a number that cannot vary: say which can
        raise
    return members(cfg, shared, varied) if is_group(cfg, varied) else cfg
