"""The single-path supernet: weight-sharing attention/conv layers and binary gates."""
from .build import (
    derive_spec,
    fix_gates,
    is_supernet,
    load_supernet_checkpoint,
    randomize_supernet_state,
    set_all_gates,
    supernet_macs,
    to_supernet,
)
from .gates import Gates, st_bernoulli
from .layers import GatedMlp, SinglePathAttention
from .searched import load_search

__all__ = [
    "Gates", "GatedMlp", "SinglePathAttention", "derive_spec", "fix_gates", "is_supernet", "load_search",
    "load_supernet_checkpoint", "randomize_supernet_state", "set_all_gates", "st_bernoulli", "supernet_macs", "to_supernet",
]
