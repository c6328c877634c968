"""The Adv-RM attack: find responses a target RM over-rewards (method.md sections 1-3)."""
