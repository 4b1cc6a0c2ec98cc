"""A run's settings (training/config.py's TrainConfig derives from `RunSettings`), declared without
torch, with the names they choose from and the parsing of `--optim GROUP:KEY=VALUE`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from deepem.declarations.model import ModelSettings
from deepem.settings import Setting, SettingError, setting

NAN_POLICIES = ("stop", "skip", "rollback")
#: training/config.py DTYPES (the torch dtypes), training/schedules.py LR_SCHEDULES
DTYPE_NAMES = ("float32", "float64")
#: training/precision.py: the step's precision ("32": float32 throughout; the others mixed, see there)
PRECISIONS = ("32", "bf16-mixed", "bf16-mixed-head32", "16-mixed")
LR_SCHEDULES = ("constant", "burda")
DEFAULT_LR = 1e-3  # every group's rate where neither the user nor the method sets one
OPTIM_KEYS = ("lr", "betas", "steps")

#: K, the method option every method has: its default is the method's own (its constructor's)
PARTICLES = Setting("particles", int | None, None, "K, particles per data point (a method option)", minimum=1,
                    short="-k", shown="the method's own, e.g. 5 for iwae, 50 for rem-v1; `deepem list` shows them")


@dataclass
class RunSettings:
    """A run: what it trains (data, corruption, model, method and its options, K among them) and how
    (the loop's settings). The CLI's flags and help, validation and the resume rules come from these
    declarations (deepem/settings)."""

    dataset: str = setting("digits", "dataset name (see `deepem list`), or a file of your own: .csv / .tsv (empty "
                           "cells, NA, NaN are missing), .npy / .npz (rows, or (N, H, W) images; NaN is missing)")
    method: str = setting("iwae", "training method (see `deepem list`)", short="-m")
    #: the method's keyword options, K ("particles") among them; a method's own default fills K in
    method_options: dict[str, Any] = setting(help="a method option", factory=dict, flag=False)
    model: ModelSettings = setting(help="the model", factory=ModelSettings, flag=False)
    epochs: int = setting(10, "passes over the training data (the maximum with --patience)", minimum=1, resume=True)
    max_iter: int | None = setting(None, "the budget in updates (optimiser steps) instead of epochs: training stops "
                                   "after this many, within an epoch if need be, so a small and a large table get "
                                   "the same number of updates (the maximum with --patience)", minimum=1,
                                   resume=True, shown="off: --epochs; a table file: 2000")
    max_epochs: int | None = setting(None, "a cap on --max-iter in passes over the training rows: training stops "
                                     "at whichever comes first, so that a small table is not fitted for hundreds "
                                     "of passes", minimum=1, resume=True,
                                     shown="off; a table file: 200 unless --epochs or --max-iter is typed")
    batch_size: int = setting(20, "data points per step", minimum=1)
    lr: float | None = setting(None, "learning rate of theta and phi (Adam); a method's own groups keep the "
                               "method's rate unless --optim sets it", above=0, shown=f"{DEFAULT_LR:g}, or the "
                               "method's paper rates where it has them (avb, iwavb)")
    schedule: str = setting("constant", "learning-rate schedule; 'burda': lr * 10^(-i/7) for 3^i epochs, i = 0..7 "
                            "(Burda et al. 2015)", choices=LR_SCHEDULES)
    adam_eps: float = setting(1e-4, "Adam's epsilon", above=0)
    #: per parameter group ("theta", "phi", or a group the method owns): {"lr", "betas", "steps"}, as in
    #: effect once the run is built (training/optim.py), and where each value came from
    optim: dict[str, dict[str, Any]] = setting(help="optimiser settings per group", factory=dict, flag=False)
    optim_sources: dict[str, dict[str, str]] = setting(help="where each optim value came from", factory=dict,
                                                       flag=False)
    seed: int = setting(0, "seed of the run (initial weights, batches, draws)", minimum=0)
    data_dir: str | None = setting(None, "folder with dataset files", resume=True,
                                   shown="$DEEPEM_DATA or ~/.cache/deepem")
    missing: str | None = setting(None, "train on incomplete data: mcar:P removes each entry with probability P "
                                  "(0 < P < 1); patches:N removes N of the 9 patches (a 3x3 grid) of each square "
                                  "image, any size (masks drawn once, saved with the run). Every method uses the mask: "
                                  "log p(x|z) counts the observed entries only and q sees x zero-filled, so iwae "
                                  "trains the MIWAE bound (miwae is the same with its paper's settings; miss-iwem "
                                  "also completes x)",
                                  shown="complete data")
    missing_seed: int = setting(0, "seed of the missing-data masks", minimum=0)
    split: str = setting("0.8,0.1,0.1", "a file dataset: train,valid,test fractions of its rows (drawn with --seed, "
                         "recorded in the run)")
    header: bool | None = setting(None, "a .csv / .tsv dataset: whether its first line names the columns",
                                  shown="detected: a first line with text where the rows have numbers")
    train_limit: int | None = setting(None, "train on the first N points only", minimum=1, shown="all")
    valid_every: int = setting(1, "epochs between validation bounds (0: never)", minimum=0, resume=True)
    valid_every_steps: int = setting(0, "updates between validations, instead of --valid-every (also one after the "
                                     "last update; 0: off)", minimum=0, resume=True)
    validation_fraction: float = setting(0.0, "held-out cells: hide this fraction of the OBSERVED cells of the "
                                         "training rows (a fixed mask drawn with --seed; within 1000 random rows of a "
                                         "longer table), train on the rest, and "
                                         "validate by the RMSE of their imputation (standardised units for a table; "
                                         "K = --valid-particles) instead of the validation split's bound; the best "
                                         "parameters are kept and the cells are not given back (no refit). 0: off",
                                         minimum=0, below=1)
    patience: int = setting(0, "early stopping: stop when N validations in a row bring no new best bound, and "
                            "evaluate the best validation's parameters (0: off; scikit-learn's n_iter_no_change)",
                            minimum=0, resume=True)
    tol: float = setting(0.0, "early stopping: a validation is a new best only when it beats the best by more than "
                         "this (bound in nats, or held-out RMSE)", minimum=0, resume=True)
    valid_particles: int = setting(100, "K of the validation bound", minimum=1)
    valid_limit: int | None = setting(1000, "validation points used", minimum=1, flag=False)
    checkpoint_every: int = setting(1, "epochs between checkpoints", minimum=1, resume=True)
    checkpoint_every_steps: int = setting(0, "also a checkpoint every N steps (0: off)", minimum=0, resume=True)
    keep_checkpoints: int = setting(3, "checkpoints kept", minimum=1, resume=True)
    nan_policy: str = setting("stop", "on a NaN/inf loss, log-weight or gradient: stop with a diagnosis, skip the "
                              "step, or roll back to the last checkpoint with half the learning rate",
                              choices=NAN_POLICIES, resume=True)
    max_rollbacks: int = setting(5, "rollback policy: give up after this many rollbacks", minimum=0, resume=True)
    max_consecutive_skips: int = setting(20, "skip policy: give up after this many skipped steps in a row",
                                         minimum=0, resume=True)
    tensorboard: bool = setting(False, "also write TensorBoard event files into RUN/tensorboard/ (losses, bounds, "
                                "learning rates per logging window; validation bounds and images), to watch with "
                                "`tensorboard --logdir runs/`; needs `pip install 'deepem[tensorboard]'`", resume=True)
    device: str = setting("cpu", "cpu, cuda or cuda:N", resume=True)
    dtype: str = setting("float32", "floating-point precision", choices=DTYPE_NAMES)
    #: not resumable: a resumed run keeps the precision its past steps were computed with
    precision: str = setting("32", "precision of the training step: 32 (float32), bf16-mixed (network products "
                             "in bfloat16; densities, log-weights and the optimiser in float32), bf16-mixed-head32 "
                             "(the same with the output layers in float32), 16-mixed (float16 with loss scaling, "
                             "CUDA only); evaluation is float32", choices=PRECISIONS)
    compile: bool = setting(False, "compile the step's forward and backward pass with torch.compile (a C++ "
                            "compiler on CPU, Triton on CUDA); the first step of each batch shape compiles, a "
                            "minute or more on CPU; the same draws and, to float rounding, the same losses",
                            resume=True)
    cuda_graph: bool = setting(False, "replay each training step as one CUDA graph (CUDA only; the step that "
                               "decides non-finite steps on the GPU, one optimiser step per group, one process, "
                               "without --compile); the same steps as without it", resume=True)


def parse_optim_setting(text: str) -> tuple[str, str, Any]:
    """GROUP:KEY=VALUE (the CLI's --optim), e.g. phi:lr=3e-4, phi:betas=0.9,0.99 or discriminator:steps=5:
    the text read as KEY's type here, the value checked by `check_optim_value` (as a run's config is)."""
    group, colon, rest = text.partition(":")
    key, eq, raw = rest.partition("=")
    group, key = group.strip(), key.strip()
    if not (colon and eq and group and key):
        raise SettingError(f"--optim {text!r} is not GROUP:KEY=VALUE (e.g. phi:lr=3e-4, phi:betas=0.9,0.99, "
                           "discriminator:steps=5)")
    try:
        if key not in OPTIM_KEYS:
            raise SettingError(f"unknown key {key!r}; allowed keys: {', '.join(OPTIM_KEYS)}")
        try:
            value: Any = ([float(v) for v in raw.split(",")] if key == "betas" else
                          int(raw) if key == "steps" else float(raw))
        except ValueError:
            raise SettingError(f"{key} takes " + ("two numbers like 0.9,0.999" if key == "betas" else
                                                  "a whole number" if key == "steps" else "a number")) from None
        return group, key, check_optim_value(group, key, value)
    except SettingError as err:
        raise SettingError(f"--optim {text!r}: {err}") from None


def check_optim_value(group: str, key: str, value: Any) -> Any:
    """One optimiser setting of a parameter group checked, the one check of `--optim` and of a run's
    config (training/optim.py): lr a positive finite number, betas two numbers in [0, 1), steps a whole
    number >= 1; SettingError names GROUP.KEY."""
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    if key == "lr" and not (number(value) and value > 0):
        raise SettingError(f"{group}.lr = {value!r}: must be a positive finite number")
    if key == "betas" and not (isinstance(value, (list, tuple)) and len(value) == 2
                               and all(number(v) and 0 <= v < 1 for v in value)):
        raise SettingError(f"{group}.betas = {value!r}: must be two numbers in [0, 1), e.g. 0.9,0.999")
    if key == "steps" and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise SettingError(f"{group}.steps = {value!r}: must be an integer >= 1")
    return value
