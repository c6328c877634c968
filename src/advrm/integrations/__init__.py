"""Hooks that plug advrm reward models into distributed RL engines (OpenRLHF, verl) without a
home-made distributed layer: the engine calls an HTTP reward server that ``advrm serve-rm`` runs."""
