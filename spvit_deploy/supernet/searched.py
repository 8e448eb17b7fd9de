"""A searched supernet on disk: its weights plus `search_state.json` (a `SearchState`: model, family,
alpha, input size, classes, the derived spec), so a search run rebuilds its supernet by itself
(`load_search`) and a fine-tune checks that the search it starts from fits its model."""
from __future__ import annotations

import json
import os
from pathlib import Path

from torch import nn

from ..artefacts import SearchState, load
from ..errors import SpvitError
from ..spec import ArchSpec

STATE_FILE = "search_state.json"


def save_search(supernet: nn.Module, model_name: str, spec: ArchSpec, weights: str | os.PathLike[str]) -> Path:
    """Write the supernet's weights to `weights` and its `search_state.json` beside them; the state's path."""
    from safetensors.torch import save_file

    from .. import __version__
    from .._io import atomic_path, write_json
    from ..families import family_of
    from ..models import model_dims
    from .build import supernet_blocks

    weights = Path(weights)
    dims = model_dims(supernet)
    state = SearchState(search_state_version=SearchState.VERSION, spvit_deploy=__version__, model=model_name,
                        family=family_of(supernet).name, alpha=float(supernet_blocks(supernet)[0].attn.alpha),
                        img_size=dims.img_size, num_classes=dims.num_classes, weights=weights.name,
                        spec=spec.to_dict())
    load(SearchState, state.to_dict(), STATE_FILE)  # what is written passes the reader's checks
    with atomic_path(weights) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in supernet.state_dict().items()}, str(tmp))
    write_json(weights.parent / STATE_FILE, state.to_dict())
    return weights.parent / STATE_FILE


def read_search_state(folder: str | os.PathLike[str]) -> SearchState | None:
    """The `SearchState` in `folder`, validated; None when there is none (a search from before it existed)."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SpvitError(f"cannot read search state '{path}' ({type(e).__name__}); {SearchState.REGENERATE}") from None
    return load(SearchState, data, str(path))


def load_search(folder: str | os.PathLike[str], device: str = "cpu") -> tuple[nn.Module, SearchState]:
    """Rebuild the supernet of the search run in `folder` from its files alone; (supernet, its `SearchState`)."""
    from ..models import create_dense
    from .build import load_supernet_checkpoint, to_supernet

    state = read_search_state(folder)
    if state is None:
        raise SpvitError(f"'{folder}' has no {STATE_FILE} (a search run from an older spvit-deploy, or no search run); "
                         "re-run 'spvit-deploy search' into it to rebuild its supernet by itself")
    dense = create_dense(state.model, num_classes=state.num_classes, img_size=state.img_size, device=device)
    supernet = to_supernet(dense, alpha=state.alpha)
    load_supernet_checkpoint(supernet, str(Path(folder) / state.weights))
    return supernet.to(device), state


def searched_supernet(dense: nn.Module, model_name: str, weights: str | os.PathLike[str] | None) -> nn.Module:
    """`dense` wrapped as a supernet holding the searched `weights` (None: fresh gates). A `search_state.json`
    beside them must describe `dense` (model, classes, input size) and sets the alpha; weights without one
    (older runs, training checkpoints) take the family's alpha, as every search so far did."""
    from ..models import model_dims
    from .build import load_supernet_checkpoint, to_supernet

    if weights is None:
        return to_supernet(dense)
    p = Path(weights)
    state = read_search_state(p.parent)
    if state is not None and state.weights != p.name:
        state = None  # another file in a search folder: its own weights, not the searched ones
    if state is not None:
        dims = model_dims(dense)
        here = (model_name, dims.num_classes, dims.img_size)
        if (state.model, state.num_classes, state.img_size) != here:
            raise SpvitError(f"'{p}' was searched for {state.model} ({state.num_classes} classes, {state.img_size} px), "
                             f"not {here[0]} ({here[1]} classes, {here[2]} px); give the search's --model, "
                             "--num-classes and --img-size, or another --supernet")
    supernet = to_supernet(dense, alpha=None if state is None else state.alpha)
    load_supernet_checkpoint(supernet, str(p))
    return supernet
