"""deepem: maximum-likelihood training of deep latent variable models with importance-weighted
and EM-style estimators, and honest evaluation of the trained models."""

__version__ = "0.1.0"
