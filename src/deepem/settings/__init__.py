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
