"""Settings declared once: a dataclass field carries a setting's name, type (its hint), default, help,
allowed values and whether a resumed run may change it; the command-line flags, their help, the checks
and the resume rules are all read from that one declaration.

    @dataclass
    class Loop:
        epochs: int = setting(10, "passes over the training data", minimum=1, resume=True)

    add_arguments(parser, Loop)          # --epochs N, help "passes ... (default: 10)", default None = not typed
    typed_values(args, Loop)             # {"epochs": 20} for the flags typed
    validate(Loop(epochs=0))             # SettingError: epochs must be >= 1, got 0

A function's keyword parameters (a method's constructor) are declared by its signature and type hints:
`signature_settings(fn)` reads them into the same `Setting` records. No torch here: importing this module
is cheap (the CLI's --help)."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING
from typing import Any

from deepem.errors import UserError


class SettingError(UserError, ValueError):
    """A setting given a value of the wrong type or out of range; the message names the setting."""


@dataclasses.dataclass(frozen=True)
class Setting:
    """One declared setting. kind: the type hint (int, float, str, bool, list[int], X | None, ...)."""

    name: str
    kind: Any
    default: Any
    help: str = ""
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    above: float | None = None  # strictly greater than
    resume: bool = False  # a resumed run may change it
    flag: bool = True  # has a command-line flag of its own (add_arguments)
    short: str | None = None  # e.g. "-k"
    shown: str | None = None  # the default as the help says it, when the value alone is not clear

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")


def setting(default: Any = MISSING, help: str = "", *, factory: Callable[[], Any] | None = None,
            choices: Sequence[Any] | None = None, minimum: float | None = None, above: float | None = None,
            resume: bool = False, flag: bool = True, short: str | None = None, shown: str | None = None) -> Any:
    """A dataclass field declaring a setting (see the module docstring); `factory` for a mutable default."""
    meta = {"help": help, "choices": None if choices is None else tuple(choices), "minimum": minimum,
            "above": above, "resume": resume, "flag": flag, "short": short, "shown": shown}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def declared(cls: type) -> dict[str, Setting]:
    """The settings a dataclass declares, by field name, in declaration order."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else None)
        meta = {k: v for k, v in f.metadata.items() if k in _META}
        out[f.name] = Setting(f.name, hints.get(f.name, Any), default, **meta)
    return out


_META = {f.name for f in dataclasses.fields(Setting)} - {"name", "kind", "default"}


def signature_settings(fn: Callable[..., Any], skip: Sequence[str] = ("self",)) -> dict[str, Setting]:
    """The keyword parameters of `fn` (a constructor) as settings: name, type hint and default."""
    hints = typing.get_type_hints(fn)
    params = inspect.signature(fn).parameters
    return {p.name: Setting(p.name, hints.get(p.name, Any), None if p.default is p.empty else p.default, flag=False)
            for p in params.values() if p.name not in skip and p.kind is not p.VAR_KEYWORD}


def resume_names(cls: type) -> tuple[str, ...]:
    """The settings of `cls` a resumed run may change."""
    return tuple(name for name, s in declared(cls).items() if s.resume)


# ---- types ----

def _optional(kind: Any) -> tuple[Any, bool]:
    """(the type without None, whether None is allowed)."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        return (args[0] if len(args) == 1 else Any), len(args) < len(typing.get_args(kind))
    return kind, False


def _describe(kind: Any) -> str:
    origin = typing.get_origin(kind)
    if kind is int:
        return "a whole number"
    if kind is float:
        return "a number"
    if kind is bool:
        return "true or false"
    if kind is str:
        return "a word"
    if origin in (list, tuple, Sequence, typing.Sequence) or kind in (list, tuple):
        inner = (typing.get_args(kind) or (Any,))[0]
        return "a list" + ({int: " of whole numbers", float: " of numbers"}.get(inner, ""))
    if origin is dict or kind is dict:
        return "KEY=VALUE settings"
    return "a value"


def text_value(text: str) -> Any:
    """Command-line text as JSON when it is JSON (numbers, true/false, lists), else as the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def convert(s: Setting, value: Any, parse_text: bool = False) -> Any:
    """`value` (typed in Python, read from JSON, or with parse_text=True text from the command line, e.g.
    "200,200") as the declared type, checked against its range and choices. SettingError names the
    setting: "invalid NAME = VALUE: must be an integer >= 1" where the declaration has a range or
    choices, else "NAME takes a number, got 'abc'"."""
    kind, nullable = _optional(s.kind)
    if value is None and (nullable or s.default is None):
        return None
    typed_text = parse_text and isinstance(value, str)
    requirement = _requirement(s, kind)
    if requirement and (nullable or s.default is None) and not typed_text:
        requirement += " or None"
    try:
        return _checked(s, kind, _parsed(kind, value) if typed_text else value)
    except SettingError:
        if requirement is None:
            raise
        raise SettingError(f"invalid {s.name} = {value!r}: must be {requirement}") from None


def _parsed(kind: Any, text: str) -> Any:
    """Command-line text as the value it spells for `kind`."""
    if kind in (str, Any):
        return text
    if kind is float:
        return _float_text(text)
    value = text_value(text.strip())
    if typing.get_origin(kind) in (list, tuple, Sequence, typing.Sequence):
        if isinstance(value, str):
            return [text_value(v.strip()) for v in value.split(",") if v.strip()]  # 200,200
        if not isinstance(value, list):
            return [value]  # one width: 200
    return value


def _requirement(s: Setting, kind: Any) -> str | None:
    """What a value must be, in words, where the declaration says more than its type."""
    if s.choices is not None:
        return f"one of {', '.join(map(str, s.choices))}"
    inner = (typing.get_args(kind) or (Any,))[0] if typing.get_origin(kind) is list else None
    what = {int: "an integer", float: "a number"}.get(inner or kind)
    if what is None or (s.minimum is None and s.above is None):
        return None
    if inner is not None:
        what = "a list of " + what.removeprefix("an ").removeprefix("a ") + "s"
    if s.above == 0 and kind is float:
        return "a positive finite number"
    return f"{what} >= {s.minimum:g}" if s.minimum is not None else f"{what} > {s.above:g}"


def _checked(s: Setting, kind: Any, value: Any) -> Any:
    if value is None:
        raise SettingError(f"{s.name} takes {_describe(kind)}, not None")
    value = _check_type(s, kind, value)
    if s.choices is not None and value not in s.choices:
        raise SettingError(f"invalid {s.name} = {value!r}: choose one of {', '.join(map(str, s.choices))}")
    for v in (value if isinstance(value, list) else [value]):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if (s.minimum is not None and v < s.minimum) or (s.above is not None and not v > s.above):
                raise SettingError(f"invalid {s.name} = {value!r}: out of range")
    return value


def _float_text(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def _check_type(s: Setting, kind: Any, value: Any) -> Any:
    bad = SettingError(f"{s.name} takes {_describe(kind)}, got {value!r}")
    if kind is bool:
        if not isinstance(value, bool):
            raise bad
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad
        value = float(value)
    elif kind is str:
        if not isinstance(value, str):
            raise bad
    elif typing.get_origin(kind) in (list, tuple, Sequence, typing.Sequence):
        inner = (typing.get_args(kind) or (Any,))[0]
        if not isinstance(value, (list, tuple)):
            raise bad
        try:
            value = [_check_type(s, inner, v) for v in value] if inner is not Ellipsis else list(value)
        except SettingError:
            raise bad from None
    elif typing.get_origin(kind) is dict or kind is dict:
        if not isinstance(value, dict):
            raise bad
    return value


def validate(obj: Any) -> None:
    """Check every declared setting of the dataclass instance `obj`; SettingError names the first bad one."""
    for name, s in declared(type(obj)).items():
        convert(s, getattr(obj, name))


def check_values(settings: Mapping[str, Setting], values: Mapping[str, Any], what: str) -> dict[str, Any]:
    """`values` converted and checked against `settings`; a name not among them is an error listing
    the names `what` (e.g. "method 'iwae'") takes."""
    unknown = sorted(set(values) - set(settings))
    if unknown:
        raise SettingError(f"{what} has no option {', '.join(unknown)}; its options are: "
                           + ", ".join(f"{k} (default {v.default!r})" for k, v in settings.items()))
    return {k: convert(settings[k], v) for k, v in values.items()}


# ---- the command line ----

def add_setting(parser: argparse.ArgumentParser | Any, s: Setting, **kw: Any) -> None:
    """The flag of one setting (see `add_arguments`); `kw` overrides argparse keywords (e.g. dest)."""
    kind, _ = _optional(s.kind)
    args: dict[str, Any] = {"dest": s.name, "default": None, "help": _help(s).replace("%", "%%")}
    if s.choices is not None:
        args["choices"] = s.choices
    if kind is bool:
        args["action"] = argparse.BooleanOptionalAction
    else:
        args["type"] = _argparse_type(s)
        args["metavar"] = _metavar(kind) if s.choices is None else None
    parser.add_argument(*([s.option] + ([s.short] if s.short else [])), **{**args, **kw})


def add_arguments(parser: argparse.ArgumentParser | Any, cls: type, names: Sequence[str] | None = None,
                  extra: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """One flag per declared setting of `cls` (those with flag=True, or `names`): `--NAME-WITH-DASHES`,
    its value converted and checked by `convert` (a bad one is argparse's one-line error, exit 2), default
    None (= not typed: `typed_values` leaves it out) and the declared default in its help.
    extra: per-name overrides of the declaration (help, choices, ...) for a dataclass declared elsewhere."""
    for name, s in declared(cls).items():
        if extra and name in extra:
            s = dataclasses.replace(s, **extra[name])
        if (names is None and not s.flag) or (names is not None and name not in names):
            continue
        add_setting(parser, s)


def _help(s: Setting) -> str:
    shown = s.shown if s.shown is not None else (
        "none" if s.default is None else ",".join(map(str, s.default)) if isinstance(s.default, (list, tuple))
        else f"{s.default:g}" if isinstance(s.default, float) else str(s.default))
    return f"{s.help} (default: {shown})".strip()


def _metavar(kind: Any) -> str | None:
    return {int: "N", float: "X", str: None}.get(kind, "LIST" if typing.get_origin(kind) is list else None)


def _argparse_type(s: Setting) -> Callable[[str], Any]:
    return argparse_type(lambda text: convert(s, text, parse_text=True), s.name)


def argparse_type(parse: Callable[[str], Any], name: str | None = None) -> Callable[[str], Any]:
    """`parse` as an argparse type: its SettingError becomes argparse's one-line error (exit 2); a
    Setting is parsed with `convert`."""
    if isinstance(parse, Setting):
        return _argparse_type(parse)

    def parsed(text: str) -> Any:
        try:
            return parse(text)
        except SettingError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parsed.__name__ = name or getattr(parse, "__name__", "value")
    return parsed


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (the count options of the estimator commands)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def key_value(text: str) -> tuple[str, Any]:
    """KEY=VALUE (a method's or a preset's option) with VALUE read as JSON when it is JSON (numbers,
    true/false, lists), else as text; whoever takes the option checks it against its declared type."""
    key, eq, raw = text.partition("=")
    if not eq or not key.strip():
        raise SettingError(f"option {text!r} is not KEY=VALUE (e.g. --option alpha_step=0.01)")
    return key.strip().replace("-", "_"), text_value(raw)


def typed_values(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The settings of `cls` typed on the command line (flags left out are absent)."""
    return {name: getattr(args, name) for name in declared(cls) if getattr(args, name, None) is not None}
