"""What the command line and a run's config.json name, declared without torch: the run's settings
(run.py), the model's (model.py) and the estimators' (estimators.py), with the names of the registries
they choose from. The classes that act on them derive from these declarations (training/config.py's
TrainConfig, models/config.py's ModelConfig, evaluation's estimators), so each setting is still declared
once, and `deepem --help` builds its parser from here without importing torch (issue 23, item 12).
Each registry's names here are checked against the registry itself (tests/cli/test_declarations.py)."""
