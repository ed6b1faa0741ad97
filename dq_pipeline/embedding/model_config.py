"""A sentence-transformers model folder's output dimension, read from its config files.

Planning needs a model's dimension (the role recorded in `dq_models`, the collection's vector size)
even when nothing is embedded, and loading a model to learn it costs seconds of importing torch.
The folder already says it: `modules.json` lists the modules, and the last one that changes the
size (a Dense layer's `out_features`, else the Pooling layer's embedding dimension times its
pooling modes) decides, as sentence-transformers decides it when loaded. Anything this reader does
not know for certain (another module type, a `truncate_dim`, a file it cannot parse) gives None,
and the caller loads the model instead. The loaded model's answer stays authoritative: the
embedder compares the two and refuses a folder whose files say otherwise (embedder.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Legacy pooling configs name each mode by a boolean; newer ones list them in `pooling_mode`.
_LEGACY_POOLING_KEYS = (
    "pooling_mode_cls_token",
    "pooling_mode_max_tokens",
    "pooling_mode_mean_tokens",
    "pooling_mode_mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens",
    "pooling_mode_lasttoken",
)
# Modules that leave the vector's size as it is.
_SIZE_KEEPING = ("Normalize", "Dropout", "LayerNorm")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _pooling_dimension(config: Any) -> int | None:
    if not isinstance(config, dict):
        return None
    size = _positive_int(config.get("embedding_dimension", config.get("word_embedding_dimension")))
    if size is None:
        return None
    modes = config.get("pooling_mode")
    if isinstance(modes, str):
        count = 1
    elif isinstance(modes, list) and modes and all(isinstance(m, str) for m in modes):
        count = len(modes)
    elif modes is None:
        count = sum(1 for key in _LEGACY_POOLING_KEYS if config.get(key) is True)
    else:
        return None
    return size * count if count else None


def declared_dimension(folder: Path) -> int | None:
    """The vector size the model in `folder` encodes to, by its config files; None if they do not say for certain."""
    modules = _read_json(folder / "modules.json")
    if not isinstance(modules, list) or not modules:
        return None
    settings = _read_json(folder / "config_sentence_transformers.json")
    if isinstance(settings, dict) and settings.get("truncate_dim") is not None:
        return None
    for module in reversed(modules):
        if not isinstance(module, dict) or not isinstance(module.get("type"), str) or not isinstance(module.get("path", ""), str):
            return None
        kind = module["type"].rsplit(".", 1)[-1]
        where = folder / module.get("path", "")
        if kind in _SIZE_KEEPING:
            continue
        if kind == "Dense":
            config = _read_json(where / "config.json")
            return _positive_int(config.get("out_features")) if isinstance(config, dict) else None
        if kind == "Pooling":
            return _pooling_dimension(_read_json(where / "config.json"))
        return None
    return None
