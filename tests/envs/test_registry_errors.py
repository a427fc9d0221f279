"""Errors met through the Python API say how to fix them in Python (``data_dir=``, ``CRS_DATA_DIR``)."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest

import envs  # noqa: F401 (registers the crs/* ids)
from simulators.datasets import DATA_DIR_ENV
from simulators.errors import CRSError


def test_gym_make_without_data_names_data_dir_and_the_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))  # an empty folder: no lastfm_star/ in it
    with pytest.raises(CRSError) as info:
        gym.make("crs/LastFMStar-v0")
    message = str(info.value)
    assert "data_dir=" in message and "CRS_DATA_DIR" in message and "--data-dir" in message
    assert "lastfm_star" in message


def test_gym_make_with_no_data_folder_at_all_names_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with pytest.raises(CRSError) as info:
        gym.make("crs/LastFMStar-v0")
    message = str(info.value)
    assert "data_dir=" in message and "CRS_DATA_DIR" in message and "--data-dir" in message


def test_a_missing_data_dir_argument_names_data_dir(tmp_path: Path) -> None:
    with pytest.raises(CRSError) as info:
        gym.make("crs/LastFM-v0", data_dir=tmp_path / "nowhere")
    message = str(info.value)
    assert "nowhere" in message and "data_dir=" in message and "CRS_DATA_DIR" in message
