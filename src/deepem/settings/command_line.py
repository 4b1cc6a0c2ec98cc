"""A declared setting on the command line: its flag, help and parsing (see the package docstring)."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from deepem.settings.declare import Setting, SettingError, _optional, convert, declared, text_value


def add_setting(parser: argparse.ArgumentParser | Any, s: Setting, *, untyped_none: bool = True, **kw: Any) -> None:
    """The flag of one setting: the only place a `deepem` flag is made (see `add_arguments`). untyped_none:
    a flag left out reads None (= not typed: the declared default applies later, as for the run settings),
    else the declared default itself (a subcommand's own flags). `kw` overrides argparse keywords."""
    kind, _ = _optional(s.kind)
    default = None if untyped_none and not s.positional else s.default
    args: dict[str, Any] = {"help": _help(s).replace("%", "%%")}
    if not s.positional:
        args.update(dest=s.attribute, default=default)
    if s.choices is not None:
        args["choices"] = s.choices
    if kind is bool and s.default is False and not s.repeat:
        args["action"] = "store_true"  # a switch: on when given
    elif kind is bool:
        args["action"] = argparse.BooleanOptionalAction
    else:
        args["type"] = _argparse_type(s)
        args["metavar"] = s.metavar or (_metavar(kind) if s.choices is None else None)
        if s.repeat:
            args["action"] = "append"
    if s.required:
        args["required"] = True
    names = [s.attribute] if s.positional else [s.option] + ([s.short] if s.short else [])
    parser.add_argument(*names, **{**args, **kw})


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line naming the flag and what is wrong (exit 2): the
    usage is one `--help` away."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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
    if s.positional:
        return s.help
    if s.required:
        return f"{s.help} (required; no default)".strip()
    shown = s.shown if s.shown is not None else (
        "off" if s.default is False and s.kind is bool else "none" if s.default is None
        else ",".join(map(str, s.default)) if isinstance(s.default, (list, tuple))
        else f"{s.default:g}" if isinstance(s.default, float) else str(s.default))
    return f"{s.help} (default: {shown})".strip()


def _metavar(kind: Any) -> str | None:
    return {int: "N", float: "X", str: None}.get(kind, "LIST" if typing.get_origin(kind) is list else None)


def _argparse_type(s: Setting) -> Callable[[str], Any]:
    """The one check of a typed value: the declaration's own parse, else its type, range and choices."""
    return argparse_type(s.parse or (lambda text: convert(s, text, parse_text=True)), s.name)


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
