"""Every config in benchmarks/configs is one `crs train --config` or `crs sweep` accepts as it stands."""

from __future__ import annotations

from pathlib import Path

import pytest

from crs.app.settings import make_settings
from crs.app.sweep import load_sweep_config
from crs.common import read_settings_file

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "benchmarks" / "configs").glob("*.yaml"))


def test_the_benchmark_configs_are_found() -> None:
    assert len(CONFIGS) >= 30


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.name)
def test_a_benchmark_config_validates(path: Path, request: pytest.FixtureRequest) -> None:
    data = read_settings_file(path, "config file")
    if "kind" in data:  # a sweep, whose data_dir must be a folder (skipped locally without the data)
        if "data_dir:" in path.read_text():
            request.getfixturevalue("real_data_dir")
        assert load_sweep_config(path).kind == data["kind"]
    else:
        settings = make_settings(data)
        assert settings.dataset == data["dataset"]
