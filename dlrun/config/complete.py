"""Shell completion of overrides (`dlrun train model=<TAB>`): config groups and their options (declared, conf/'s
presets and plugins'), the keys of a group (`optim.<TAB>`, every option's fields, nested ones dotted) and the
values a key declares (choices, true/false). `dlrun --install-completion` installs it in the user's shell."""

from __future__ import annotations

from dataclasses import MISSING, fields, is_dataclass
from typing import Any

META = ("name", "runs_dir", "resume", "backprop", "experiment")


def _keys(schema: type, prefix: str = "") -> dict[str, Any]:
    """{dotted key: field} of a schema, nested dataclasses expanded (data.augment.crop)."""
    out = {}
    for f in fields(schema):
        if f.name == "name":
            continue
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        if is_dataclass(default):
            out |= _keys(type(default), f"{prefix}{f.name}.")
        else:
            out[f"{prefix}{f.name}"] = f
    return out


def group_keys(group: str) -> dict[str, Any]:
    """Every key any option of the group has (optim.lr, optim.betas of adam, ...), with its field."""
    from dlrun.options import declared

    keys: dict[str, Any] = {}
    for decl in declared(group).values():
        keys |= _keys(decl.schema)
    return keys


def complete(incomplete: str) -> list[str]:
    """The completions of one override being typed."""
    try:
        from dlrun import plugins
        from dlrun.config.compose import list_options
        from dlrun.options import GROUPS

        plugins.load(plugins.from_environment())
        options = list_options()
    except Exception:  # noqa: BLE001 - completion never prints a traceback into the user's prompt
        return []
    key, eq, value = incomplete.partition("=")
    if eq:
        if key in options:  # model=<TAB>: the group's options
            return [f"{key}={n}" for n, _ in options[key] if n.startswith(value)]
        group, _, rest = key.partition(".")
        f = group_keys(group).get(rest) if group in GROUPS else None
        if f is None:
            return []
        values = f.metadata.get("choices") or (("true", "false") if f.type in (bool, "bool") else ())
        return [f"{key}={v}" for v in values if str(v).startswith(value)]
    if "." in key:  # optim.<TAB>: the group's keys
        group, _, rest = key.partition(".")
        if group not in GROUPS:
            return []
        return [f"{group}.{k}=" for k in sorted(group_keys(group)) if k.startswith(rest)]
    groups = [f"{g}=" for g in sorted(options) if g.startswith(key)]
    dotted = [f"{g}." for g in GROUPS if g.startswith(key)]
    return groups + dotted + [f"{m}=" for m in META if m.startswith(key) and f"{m}=" not in groups]
