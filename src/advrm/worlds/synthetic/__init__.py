"""The synthetic world: a hidden grammar, a gold judge, and a tiny reference policy trained on it.

Follows Gao et al. (2023): a gold judge that the proxy RMs never see labels preference pairs, the
proxies learn from those labels, and the gold judge measures what RL against the proxy really did.
"""
