"""Settings declared once: a dataclass field carries a setting's name, type (its hint), default, help,
allowed values and whether a resumed run may change it; the command-line flags, their help, the checks
and the resume rules are all read from that one declaration.

    @dataclass
    class Loop:
        epochs: int = setting(10, "passes over the training data", minimum=1, resume=True)

    add_arguments(parser, Loop)          # --epochs N, help "passes ... (default: 10)", default None = not typed
    typed_values(args, Loop)             # {"epochs": 20} for the flags typed
    validate(Loop(epochs=0))             # SettingError: invalid epochs = 0: must be an integer >= 1

A flag that is not a field of a record is a `Setting` itself (deepem/declarations/commands.py holds the
subcommands' own: --seed, --device, ...), with what the command line needs beyond the value: a `dest`,
a `metavar`, `positional`, `required`, `repeat` (a repeatable flag) or its own `parse` of the text.
`add_setting` makes every flag from one such declaration, and `convert` is the one check of a value.

A function's keyword parameters (the constructor of a method that declares no options) are read from
its signature and type hints: `signature_settings(fn)` gives the same `Setting` records. No torch here:
importing this module is cheap (the CLI's --help)."""

from deepem.settings.command_line import (
    OneLineParser,
    add_arguments,
    add_setting,
    argparse_type,
    key_value,
    positive_int,
    typed_values,
)
from deepem.settings.declare import (
    Setting,
    SettingError,
    check_values,
    convert,
    declared,
    requirement,
    resume_names,
    setting,
    signature_settings,
    text_value,
    validate,
)

__all__ = ["OneLineParser", "Setting", "SettingError", "add_arguments", "add_setting", "argparse_type", "check_values",
           "convert", "declared", "key_value", "positive_int", "requirement", "resume_names", "setting",
           "signature_settings", "text_value", "typed_values", "validate"]
