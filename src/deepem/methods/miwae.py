"""MIWAE (Mattei & Frellsen 2019, "MIWAE: Deep generative modelling and imputation of incomplete data
sets", eq. 4): the importance-weighted bound of the observed part of x,

    L_K = E[log (1/K) sum_k p(x_o | z_k) p(z_k) / q(z_k | x̃)],   z_k ~ q(z | x̃),

where x̃ is x with its missing entries set to 0 (the encoder never reads a missing value) and
p(x_o | z) is the likelihood summed over observed entries only. It is a lower bound on log p(x_o),
maximised jointly in θ and φ with reparameterised z, exactly as IWAE: `draw(..., mask=mask)`
already zero-fills the encoder's input (`DeepLatentModel.encode`) and masks the likelihood, so this
method is IWAE with the mask passed through, and with mask=None it is IWAE.

Not to be confused with Rainforth et al.'s (2018) multiply importance weighted autoencoder, which
averages M IWAE bounds of K particles each and which pythae also calls "MIWAE": that is a different
estimator for fully observed data."""

from __future__ import annotations

from deepem.methods.iwae import IWAE


class MIWAE(IWAE):
    """Missing-data IWAE. Options: particles (K, default 5). Requires a reparameterised q with a density
    (as IWAE); with mask=None it is IWAE. The θ and φ losses are the same tensor, -mean_b L_K: θ gets
    its gradient through log p(z_k) + log p(x_o | z_k), φ through z_k and log q."""

    name = "miwae"
    vectorisable = False  # (its point is missing data, which vectorised seeds do not take)
