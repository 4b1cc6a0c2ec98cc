"""What TensorBoard shows of a run after each validation besides the bound (the Watcher of
training/tensorboard.py): the encoder's KL to the prior and its active units on the validation points, and,
for image data, samples from the prior and validation images with their reconstructions (or, on
incomplete data, their imputations), drawn by the code of the run's figures (report/) as they are saved.

Every draw comes from a generator seeded by the run's seed, so the images of two validations differ only
by what the model learnt in between."""

from __future__ import annotations

import torch
from torch import nn

from deepem.data.base import DataSplits
from deepem.evaluation.diagnostics import active_units, encoder_means, kl_to_prior
from deepem.evaluation.imputation import impute
from deepem.inference.distributions import Q_DENSITY
from deepem.models.lvm import DeepLatentModel
from deepem.report.figures import image_grid_figure
from deepem.report.imputation import imputation_figure
from deepem.report.plotting import pixels
from deepem.training.config import TrainConfig
from deepem.training.tensorboard import Watched, Watcher

SAMPLES = 32  # images drawn from the prior, 8 a row
SHOWN = 8  # validation images shown with their reconstructions or imputations


def validation_watch(data: DataSplits, config: TrainConfig) -> Watcher:
    """The Watcher of a run on `data` with `config`: the validation points it validates on (valid_limit)."""
    valid = data.valid if config.valid_limit is None else data.valid[: config.valid_limit]
    mask = None if data.valid_mask is None else data.valid_mask[: len(valid)]
    shape, seed = data.image_shape, config.seed

    def watch(model: nn.Module) -> Watched:
        assert isinstance(model, DeepLatentModel)
        means = encoder_means(model, valid, mask=mask)
        watched = Watched(scalars={"active_units": float(active_units(model, valid, means=means)),
                                   "kl_to_prior": kl_to_prior(model, valid, mask=mask, seed=seed)})
        if shape is None or len(valid) == 0:
            return watched
        p = next(model.parameters())
        generator = torch.Generator(device=p.device).manual_seed(seed)
        watched.images["samples"] = pixels(image_grid_figure(model.sample(SAMPLES, generator=generator).float().cpu(),
                                                             shape, title="samples: decoder means of z ~ p(z)"))
        shown = valid[:SHOWN]
        if mask is None:
            x = shown.to(p.device, p.dtype)
            z = model.encode(x).sample(1, generator)[0]
            reconstructed = model.likelihood.mean(model.decoder(z))
            watched.images["reconstructions"] = pixels(image_grid_figure(
                torch.cat([x, reconstructed]).float().cpu(), shape, columns=len(shown),
                title="validation images (top), reconstructed from one z ~ q(z|x) (bottom)"))
        elif Q_DENSITY in model.capabilities():  # imputation weighs by q's density
            shown_mask = mask[:SHOWN]
            imputed = impute(model, shown, shown_mask, particles=config.valid_particles, seed=seed).imputed
            watched.images["imputations"] = pixels(imputation_figure(
                shown, shown_mask, imputed, shape,
                title=f"validation images imputed (self-normalised IS, K = {config.valid_particles})"))
        return watched

    return watch
