"""Training configuration: validation, unknown keys, network allow-list, ``--set``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from radserve.training import ConfigError, SegResNetConfig, UNetConfig, load_config, parse_config
from tests.conftest import REPO_ROOT

CONFIGS = REPO_ROOT / "configs" / "train"
DEMO = CONFIGS / "sts_ct_gtv.yaml"


def _text() -> str:
    return DEMO.read_text(encoding="utf-8")


def test_demo_and_smoke_configs_are_valid() -> None:
    demo = load_config(DEMO)
    assert demo.config.name == "sts-ct-gtv"
    assert isinstance(demo.config.network, UNetConfig)
    assert demo.config.data.split.force_validation == ("STS_002",)
    assert demo.text == _text()  # without overrides the exact file text is kept
    assert demo.resolve(demo.config.data.datalist) == CONFIGS / "sts_ct_gtv_datalist.json"
    assert load_config(CONFIGS / "tiny_smoke.yaml").config.optim.epochs == 2


def test_unknown_key_is_named() -> None:
    text = _text().replace("  cache_rate: 1.0", "  cache_rate: 1.0\n  cahce: true")
    with pytest.raises(ConfigError, match=r"unknown key 'data.cahce'"):
        parse_config(text, base_dir=CONFIGS)


def test_wrong_type_is_named() -> None:
    text, replaced = re.subn(r"(?m)^  epochs: \d+", "  epochs: many", _text())
    assert replaced == 1
    with pytest.raises(ConfigError, match=r"optim.epochs"):
        parse_config(text, base_dir=CONFIGS)


def test_network_outside_allow_list_is_rejected() -> None:
    text = _text().replace("  name: UNet", "  name: SwinUNETR")
    with pytest.raises(ConfigError, match="SegResNet, UNet, DynUNet"):
        parse_config(text, base_dir=CONFIGS)


def test_set_overrides_are_yaml_scalars_and_revalidated() -> None:
    loaded = parse_config(
        _text(),
        overrides=["optim.epochs=7", "optim.amp=false"],
        base_dir=CONFIGS,
    )
    assert loaded.config.optim.epochs == 7
    assert loaded.config.optim.amp is False
    assert loaded.text != _text()
    assert "epochs: 7" in loaded.text
    # Switching the network leaves UNet keys that SegResNet does not know.
    with pytest.raises(ConfigError, match=r"unknown key 'network\.SegResNet\.channels'"):
        parse_config(_text(), overrides=["network.name=SegResNet"], base_dir=CONFIGS)


def test_set_can_switch_network_with_a_list_value() -> None:
    text = _text()
    start = text.index("network:\n")
    end = text.index("\naugmentation:")
    text = text[:start] + "network:\n  name: SegResNet\n" + text[end:]
    loaded = parse_config(text, overrides=["network.blocks_down=[1, 1, 1]"], base_dir=CONFIGS)
    assert isinstance(loaded.config.network, SegResNetConfig)
    assert loaded.config.network.blocks_down == (1, 1, 1)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.epochs", "key=value"),
        ("=3", "key=value"),
        ("optim..epochs=3", "key=value"),
        ("optim.epochs=abc", "optim.epochs"),
        ("optim.epochs={a: 1}", "scalar"),
        ("seed.x=1", "not a section"),
        ("optim.nope=1", "unknown key 'optim.nope'"),
    ],
)
def test_bad_set_is_rejected(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(_text(), overrides=[override], base_dir=CONFIGS)


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("!!python/object/apply:os.system ['true']\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_split_fold_must_be_in_range() -> None:
    with pytest.raises(ConfigError, match=r"fold must be in 0\.\.4"):
        parse_config(
            _text(), overrides=["data.split.folds=5", "data.split.fold=5"], base_dir=CONFIGS
        )
