"""rest-em: ReST-EM (Singh et al. 2023) -- E-step sampling, binary verification, M-step from the base model."""

__version__ = "0.1.0"
