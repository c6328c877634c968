"""advrm: adversarial training of reward models (Adv-RM, Bukharin et al. 2025)."""

__version__ = "0.1.0"
