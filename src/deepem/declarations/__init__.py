"""What the command line and a run's config.json name, declared without torch: the run's settings
(run.py), the model's (model.py), the estimators' (estimators.py), the methods' options (methods.py)
and every subcommand with its own flags (commands.py), with the names of the registries they choose
from. The classes that act on them derive from these declarations (training/config.py's TrainConfig,
models/config.py's ModelConfig, evaluation's estimators), so each setting is still declared once, and
`deepem --help` builds its parser from here without importing torch. Each registry's names here are
checked against the registry itself, in one test (tests/cli/test_registry_facts.py)."""
