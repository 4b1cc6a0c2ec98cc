"""Declaring a setting once and checking values against the declaration (see the package docstring)."""

from __future__ import annotations

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
    maximum: float | None = None
    above: float | None = None  # strictly greater than
    below: float | None = None  # strictly less than
    resume: bool = False  # a resumed run may change it
    flag: bool = True  # has a command-line flag of its own (add_arguments)
    short: str | None = None  # e.g. "-k"
    shown: str | None = None  # the default as the help says it, when the value alone is not clear
    flag_name: str | None = None  # the flag, where it is not --NAME-WITH-DASHES (e.g. --ais-initial)
    # ---- the command line only (a subcommand's own flags, deepem/declarations/commands.py) ----
    dest: str | None = None  # the parsed arguments' attribute, where it is not NAME (e.g. options for --option)
    metavar: str | None = None  # e.g. FILE, RUN_DIR
    positional: bool = False  # an argument without a flag (e.g. RUN_DIR)
    required: bool = False
    repeat: bool = False  # the flag may be given several times: the value is the list of what each gave
    #: reads the command-line text where the type alone does not say how (e.g. GROUP:KEY=VALUE); it
    #: raises SettingError naming the setting
    parse: Callable[[str], Any] | None = None

    @property
    def option(self) -> str:
        return self.flag_name or "--" + self.name.replace("_", "-")

    @property
    def attribute(self) -> str:
        """The name the parsed arguments hold the value under."""
        return self.dest or self.name


def setting(default: Any = MISSING, help: str = "", *, factory: Callable[[], Any] | None = None,
            choices: Sequence[Any] | None = None, minimum: float | None = None, maximum: float | None = None,
            above: float | None = None,
            below: float | None = None, resume: bool = False, flag: bool = True, short: str | None = None,
            shown: str | None = None, flag_name: str | None = None, dest: str | None = None,
            metavar: str | None = None, positional: bool = False, required: bool = False, repeat: bool = False,
            parse: Callable[[str], Any] | None = None) -> Any:
    """A dataclass field declaring a setting (see the module docstring); `factory` for a mutable default."""
    meta = {"help": help, "choices": None if choices is None else tuple(choices), "minimum": minimum,
            "maximum": maximum, "above": above, "below": below, "resume": resume, "flag": flag, "short": short,
            "shown": shown, "flag_name": flag_name, "dest": dest, "metavar": metavar, "positional": positional,
            "required": required, "repeat": repeat, "parse": parse}
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


def requirement(s: Setting) -> str:
    """What a value of `s` must be, in words (its type, range and choices), e.g. "an integer >= 2"."""
    kind, nullable = _optional(s.kind)
    words = _requirement(s, kind) or _describe(kind)
    return words + (" or none" if nullable or (s.default is None and s.choices is None) else "")


def _requirement(s: Setting, kind: Any) -> str | None:
    """What a value must be, in words, where the declaration says more than its type."""
    if s.choices is not None:
        return f"one of {', '.join(map(str, s.choices))}"
    inner = (typing.get_args(kind) or (Any,))[0] if typing.get_origin(kind) is list else None
    what = {int: "an integer", float: "a number"}.get(inner or kind)
    if what is None or (s.minimum is None and s.above is None and s.below is None and s.maximum is None):
        return None
    if inner is not None:
        what = "a list of " + what.removeprefix("an ").removeprefix("a ") + "s"
    if s.above == 0 and kind is float and s.below is None:
        return "a positive finite number"
    least = f" >= {s.minimum:g}" if s.minimum is not None else f" > {s.above:g}" if s.above is not None else ""
    most = f" < {s.below:g}" if s.below is not None else f" <= {_bound(s.maximum)}" if s.maximum is not None else ""
    return what + least + (f"{' and' if least and most else ''}{most}")


def _bound(x: float) -> str:
    """A range's end as written: 1000000, not 1e+06."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _checked(s: Setting, kind: Any, value: Any) -> Any:
    if value is None:
        raise SettingError(f"{s.name} takes {_describe(kind)}, not None")
    value = _check_type(s, kind, value)
    if s.choices is not None and value not in s.choices:
        raise SettingError(f"invalid {s.name} = {value!r}: choose one of {', '.join(map(str, s.choices))}")
    for v in (value if isinstance(value, list) else [value]):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if ((s.minimum is not None and v < s.minimum) or (s.above is not None and not v > s.above)
                    or (s.maximum is not None and v > s.maximum)
                    or (s.below is not None and not v < s.below)):
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
