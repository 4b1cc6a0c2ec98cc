"""Command-line flags of the estimators, generated from their settings records (evaluation/settings.py):
each field's flag, help and allowed values come from its declaration, and its default is printed from
it. Flags default to None so that only what the user typed is passed on; the record fills the rest."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from typing import Any

from deepem.evaluation.estimators import ESTIMATORS
from deepem.evaluation.settings import AISSettings, IWSettings, ObservedIWSettings

#: flags whose name is not the field's (kept as users already type them)
FLAG_NAMES = {"initial": ["--ais-initial"], "particles": ["--particles", "-k"]}


def _number(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{' whole' if kind is int else ''} number") from None

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def add_estimator_arguments(parser: argparse.ArgumentParser,
                            records: Sequence[type] = (IWSettings, ObservedIWSettings, AISSettings)) -> None:
    """One flag per field of the given settings records (a field shared by several, once), in a group
    per estimator. Values are checked by the records themselves (one line naming the setting)."""
    seen: set[str] = set()
    for record in records:
        group = parser.add_argument_group(f"{record.estimator} estimator")
        for f in dataclasses.fields(record):
            if f.name in seen:
                continue
            seen.add(f.name)
            flags = FLAG_NAMES.get(f.name, ["--" + f.name.replace("_", "-")])
            options: dict[str, Any] = {"dest": f.name, "default": None,
                                       "help": f"{f.metadata['help']} (default: {f.default})"}
            if "choices" in f.metadata:
                options["choices"] = f.metadata["choices"]
            else:
                options["type"] = _number(int if f.default is None else type(f.default))
            group.add_argument(*flags, **options)


def estimator_settings(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """The settings of estimator `name` the user typed (flags left out are not passed)."""
    fields = dataclasses.fields(ESTIMATORS[name].Settings)
    return {f.name: getattr(args, f.name) for f in fields if getattr(args, f.name, None) is not None}
