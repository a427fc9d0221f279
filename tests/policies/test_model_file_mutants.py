"""The allow-listed loader of SB3 model zips (`policies.rl.model_file`) under attack, plus the model
helpers beside it: hostile zips built by hand (pickled payloads in ``data`` and in the torch entries,
path tricks, odd and oversized entries, hostile JSON) must be refused without the payload running."""

from __future__ import annotations

import base64
import io
import json
import os
import struct
import tempfile
import tracemalloc
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any

import cloudpickle
import gymnasium as gym
import numpy as np
import pytest
import torch

from envs.setting import SETTINGS, check_setting, default_setting, offers_probes
from policies.baseline_rankers import PopularityRanker, TransERanker
from policies.rl import RLConfig
from policies.rl.model import _OwnSeed, encoder_kwargs, pretrained_arrays, training_env_seed
from policies.rl.model_file import (
    ACTING_OVERRIDES,
    MAX_INFLATION,
    RESET_FIELDS,
    VARIABLES,
    ModelFileError,
    UnsafeModelFileError,
    load_model,
    non_finite_weights,
    read_model_data,
    safe_custom_objects,
    training_overrides,
)
from policies.rl.run_files import atomic_save
from simulators.datasets import load_catalog
from simulators.errors import CRSError
from tests.policies.test_rl_policy import SMALL, model_for, random_persona_ranker


# ------------------------------------------------------------------------------------------ helpers
class _Payload:
    """Unpickling this creates the file `marker` (what a hostile zip would run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _torch_bytes(value: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def _pickled(marker: Path) -> bytes:
    """A plain pickle whose loading creates `marker`."""
    return cloudpickle.dumps(_Payload(marker))


def _serialized(marker: Path) -> dict[str, str]:
    """A ``data`` field as SB3 writes a pickled object, whose unpickling creates `marker`."""
    return {":type:": "<class 'object'>", ":serialized:": base64.b64encode(_pickled(marker)).decode()}


def _entries(data: object = None) -> dict[str, bytes]:
    """The three entries `read_model_data` needs, with `data` (default {"n_steps": 8}) as its JSON."""
    return {
        "data": json.dumps({"n_steps": 8} if data is None else data).encode(),
        VARIABLES: _torch_bytes({}),
        "policy.pth": _torch_bytes({}),
    }


def _write_zip(path: Path, entries: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return path


def _rewrite(path: Path, change) -> Path:
    """Rewrite the model zip `path` with `change` applied to its {entry: bytes}."""
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    change(entries)
    return _write_zip(path, entries)


def _edit_data(change):
    """A `_rewrite` change applying `change` to the zip's data JSON (a dict)."""

    def edit(entries: dict[str, bytes]) -> None:
        data = json.loads(entries["data"])
        change(data)
        entries["data"] = json.dumps(data).encode()

    return edit


# ------------------------------------------------------------------------------ read_model_data (no model)
def test_a_zip_of_the_entries_crs_train_writes_reads_back_its_data(tmp_path: Path) -> None:
    """The optional entries SB3 writes are accepted, and the data JSON is returned as written."""
    entries = _entries({"n_steps": 8, "gamma": 0.5})
    entries |= {
        "policy.optimizer.pth": _torch_bytes({}),
        "_stable_baselines3_version": b"2",
        "system_info.txt": b"",
    }
    assert read_model_data(_write_zip(tmp_path / "m.zip", entries)) == {"n_steps": 8, "gamma": 0.5}


@pytest.mark.parametrize("variables", [None, {}])
def test_pytorch_variables_of_none_or_nothing_are_accepted(tmp_path: Path, variables: object) -> None:
    """PPO saves no torch variables: an entry holding None or an empty mapping is what it writes."""
    entries = _entries() | {VARIABLES: _torch_bytes(variables)}
    assert read_model_data(_write_zip(tmp_path / "m.zip", entries)) == {"n_steps": 8}


@pytest.mark.parametrize("variables", [[], {"policy.x": torch.zeros(1)}, torch.zeros(2)])
def test_pytorch_variables_holding_anything_are_refused(tmp_path: Path, variables: object) -> None:
    entries = _entries() | {VARIABLES: _torch_bytes(variables)}
    with pytest.raises(UnsafeModelFileError, match=r"pytorch_variables\.pth holds"):
        read_model_data(_write_zip(tmp_path / "m.zip", entries))


@pytest.mark.parametrize(
    "name",
    [
        "../policy.pth",  # path tricks: outside the archive's root
        "/tmp/policy.pth",
        "./data",
        "data/",  # a folder entry
        "DATA",
        "tensors.pth",  # SB3 reads it as the torch variables and sets each name it holds
        "policy.features_extractor.pth",  # SB3 loads X.pth into the model's attribute X
    ],
)
def test_an_entry_crs_train_does_not_write_is_refused(tmp_path: Path, name: str) -> None:
    path = _write_zip(tmp_path / "m.zip", _entries() | {name: _torch_bytes({})})
    with pytest.raises(UnsafeModelFileError, match="holds the entries"):
        read_model_data(path)


@pytest.mark.parametrize("missing", ["data", VARIABLES, "policy.pth"])
def test_a_zip_without_an_entry_sb3_needs_is_refused_as_not_crs_trains(tmp_path: Path, missing: str) -> None:
    """Without the policy's weights SB3 would build a network of no learned state: the entries are named."""
    entries = _entries()
    del entries[missing]
    with pytest.raises(UnsafeModelFileError, match="holds the entries"):
        read_model_data(_write_zip(tmp_path / "m.zip", entries))


def _padded(size: int) -> bytes:
    """A data JSON of exactly `size` bytes (spaces after the object)."""
    text = json.dumps({"n_steps": 8}).encode()
    return text + b" " * (size - len(text))


def test_an_entry_may_inflate_to_exactly_the_limit_and_not_one_byte_more(tmp_path: Path) -> None:
    """Entries stored under 64 KiB may inflate to `MAX_INFLATION` x 64 KiB; one byte more is refused."""
    limit = MAX_INFLATION * (1 << 16)
    at = _write_zip(tmp_path / "at.zip", _entries() | {"data": _padded(limit)}, zipfile.ZIP_DEFLATED)
    assert zipfile.ZipFile(at).getinfo("data").compress_size < 1 << 16
    assert read_model_data(at) == {"n_steps": 8}
    over = _write_zip(tmp_path / "over.zip", _entries() | {"data": _padded(limit + 1)}, zipfile.ZIP_DEFLATED)
    with pytest.raises(UnsafeModelFileError, match=f"entry data inflates from .* to {limit + 1:,} bytes"):
        read_model_data(over)


def test_a_large_entry_stored_uncompressed_is_accepted(tmp_path: Path) -> None:
    """SB3 stores entries uncompressed: a big network's weights (beyond 100 x 64 KiB) inflate 1:1."""
    big = MAX_INFLATION * (1 << 16) + 1000
    path = _write_zip(tmp_path / "m.zip", _entries() | {"policy.pth": b"\0" * big})
    assert read_model_data(path) == {"n_steps": 8}


def _lying_size(path: Path, name: str, size: int) -> None:
    """Make the zip `path` declare `size` bytes for the entry `name` in both of its headers."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        offset, central = archive.getinfo(name).header_offset, archive.start_dir
    struct.pack_into("<I", raw, offset + 22, size)  # local header: uncompressed size
    while raw[central + 46 : central + 46 + len(name)] != name.encode():  # its central directory record
        central = raw.index(b"PK\x01\x02", central + 4)
    struct.pack_into("<I", raw, central + 24, size)  # central directory: uncompressed size
    path.write_bytes(bytes(raw))


def test_an_entry_that_understates_its_size_is_not_inflated_into_memory(tmp_path: Path) -> None:
    """A data entry of 50 MB of spaces (about 50 KB deflated) declaring 1000 bytes passes the check on the
    declared sizes; reading it must still hold no more than the limit (100 x 64 KiB) in memory. (The fault
    this caught: ``ZipFile.read`` inflated the whole stream, 131 MB, before its CRC check refused it.)"""
    path = _write_zip(tmp_path / "m.zip", _entries() | {"data": _padded(50_000_000)}, zipfile.ZIP_DEFLATED)
    _lying_size(path, "data", 1000)
    assert zipfile.ZipFile(path).getinfo("data").file_size == 1000
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError):
            read_model_data(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * MAX_INFLATION * (1 << 16), f"{peak:,} bytes held reading a 1000-byte entry"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"m\.zip is damaged \(EOFError"),
        # torch's weights-only refusal cannot tell garbage from an object: the words say both
        (
            b"garbage",
            r"m\.zip refused: its content is not a plain tensor \(Unsupported operand 103: damaged, or",
        ),
        (_torch_bytes({"a": torch.zeros(64)})[:200], r"m\.zip is damaged \(RuntimeError"),
    ],
    ids=["empty", "not torch", "truncated"],
)
def test_damaged_pytorch_variables_are_a_named_damaged_file(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = _write_zip(tmp_path / "m.zip", _entries() | {VARIABLES: content})
    with pytest.raises(ModelFileError, match=message):
        read_model_data(path)


@pytest.mark.parametrize("wrap", ["plain pickle", "torch.save"])
def test_a_pickled_payload_in_pytorch_variables_never_runs(tmp_path: Path, wrap: str) -> None:
    """Torch's weights-only loader refuses the payload, said in one line of ours: not torch's several
    lines advising `weights_only=False` (which would run it), nor its pickle-protocol warning."""
    marker = tmp_path / "pwned"
    payload = _pickled(marker) if wrap == "plain pickle" else _torch_bytes(_Payload(marker))
    path = _write_zip(tmp_path / "m.zip", _entries() | {VARIABLES: payload})
    with warnings.catch_warnings(record=True) as shown, pytest.raises(UnsafeModelFileError) as refused:
        warnings.simplefilter("always")
        read_model_data(path)
    assert_refused_in_one_line(str(refused.value), shown, wrap)
    assert not marker.exists()


def assert_refused_in_one_line(message: str, shown: list[warnings.WarningMessage], wrap: str) -> None:
    """The project's refusal of a pickled object in a weights entry, with nothing of torch's: the global
    it references where torch names one (a plain pickle fails earlier, on an opcode)."""
    what = (
        "its content is not a plain tensor (Unsupported operand"
        if wrap == "plain pickle"
        else ("it references posix.system, which is not a plain tensor")
    )
    assert f"refused: {what}" in message, message
    assert "nothing was loaded" in message and "weights_only" not in message and "\n" not in message
    assert not [w for w in shown if "pickle protocol" in str(w.message)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", r"damaged \(JSONDecodeError"),
        (b"\xff\xfe\xfa", r"damaged \((UnicodeDecodeError|JSONDecodeError)"),
        (b"[" * 200_000 + b"]" * 200_000, r"damaged \(RecursionError"),
        (b"[1, 2]", "its 'data' entry is not a mapping"),
        (b'"n_steps"', "its 'data' entry is not a mapping"),
    ],
    ids=["not json", "not text", "nested", "list", "string"],
)
def test_a_data_entry_that_is_no_json_mapping_is_a_named_error(
    tmp_path: Path, data: bytes, message: str
) -> None:
    path = _write_zip(tmp_path / "m.zip", _entries() | {"data": data})
    with pytest.raises(ModelFileError, match=message):
        read_model_data(path)


def _damage(path: Path, name: str) -> None:
    """Flip every stored byte of the entry `name` of the zip `path`."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)  # after the local header
    for at in range(start, start + info.compress_size):
        raw[at] ^= 0x5A
    path.write_bytes(bytes(raw))


def test_a_damaged_deflated_entry_is_a_named_damaged_file(tmp_path: Path) -> None:
    """A re-zipped (deflated) model file, then damaged, is a damaged file, not a traceback. (The fault
    this caught: zlib's error was not among the damaged-file errors.)"""
    path = _write_zip(tmp_path / "m.zip", _entries(), zipfile.ZIP_DEFLATED)
    _damage(path, "data")
    with pytest.raises(ModelFileError, match=r"m\.zip is damaged \(error: "):
        read_model_data(path)


@pytest.mark.parametrize("compression", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA], ids=["bzip2", "lzma"])
@pytest.mark.parametrize("damaged", [False, True], ids=["whole", "damaged"])
def test_an_entry_compressed_otherwise_than_stored_or_deflated_is_refused_unread(
    tmp_path: Path, compression: int, damaged: bool
) -> None:
    """bzip2 and lzma inflate a whole piece at once (one small piece can fill the memory), and `crs train`
    writes neither: such an entry is refused before it is read, whole or damaged."""
    path = _write_zip(tmp_path / "m.zip", _entries(), compression)
    if damaged:
        _damage(path, "data")
    with pytest.raises(UnsafeModelFileError, match=f"entry data is compressed with zip method {compression}"):
        read_model_data(path)


def test_a_missing_model_file_or_a_folder_is_named(tmp_path: Path) -> None:
    for path in (tmp_path / "none.zip", tmp_path):
        with pytest.raises(ModelFileError, match=f"model file {path} not found or unreadable"):
            read_model_data(path)


def test_a_file_that_is_no_zip_is_damaged(tmp_path: Path) -> None:
    path = tmp_path / "m.zip"
    path.write_bytes(_pickled(tmp_path / "pwned"))
    with pytest.raises(ModelFileError, match=r"damaged \(BadZipFile"):
        read_model_data(path)
    assert not (tmp_path / "pwned").exists()


# ------------------------------------------------------------------------ safe_custom_objects (no model)
REBUILT = dict.fromkeys(("policy_class", "observation_space", "action_space", "clip_range"))


def test_every_reset_field_is_set_to_none_whatever_the_file_holds(tmp_path: Path) -> None:
    """Each field SB3 pickles without learned state is replaced by None, a payload in it never read."""
    data = {key: _serialized(tmp_path / "pwned") for key in (*RESET_FIELDS, *REBUILT)}
    objects = safe_custom_objects(tmp_path / "m.zip", data, {**REBUILT, "clip_range": 0.1})
    assert all(objects[key] is None for key in RESET_FIELDS)
    assert objects["clip_range"] == 0.1
    assert not (tmp_path / "pwned").exists()


def test_overrides_are_among_the_objects_and_win_over_the_rebuilt_ones(tmp_path: Path) -> None:
    data = {"learning_rate": 0.5, "n_steps": 64}
    objects = safe_custom_objects(
        tmp_path / "m.zip", data, REBUILT, {"learning_rate": 0.25, **ACTING_OVERRIDES}
    )
    assert objects["learning_rate"] == 0.25 and objects["n_steps"] == 1 and objects["n_envs"] == 1
    assert safe_custom_objects(tmp_path / "m.zip", data, REBUILT).keys() == {*RESET_FIELDS, *REBUILT}


@pytest.mark.parametrize("key", ["n_steps", "rollout_buffer_kwargs", "env", "policy"])
def test_a_pickled_field_nothing_rebuilds_is_refused_as_pickled(tmp_path: Path, key: str) -> None:
    with pytest.raises(UnsafeModelFileError, match=f"field {key!r} holds a pickled Python object"):
        safe_custom_objects(tmp_path / "m.zip", {key: _serialized(tmp_path / "pwned")}, REBUILT)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "kwargs",
    [
        [],
        "",
        None,
        3,
        {"net_arch": []},
        {":serialized:": "gASVAAAAAAAAAAA="},
        {"features_extractor_class": "os"},
    ],
)
def test_policy_kwargs_other_than_a_mapping_of_the_policy_s_settings_are_refused(
    tmp_path: Path, kwargs: object
) -> None:
    with pytest.raises(UnsafeModelFileError, match="policy_kwargs must be plain settings"):
        safe_custom_objects(tmp_path / "m.zip", {"policy_kwargs": kwargs}, REBUILT)


def test_policy_kwargs_of_the_policy_s_own_settings_or_none_at_all_are_accepted(tmp_path: Path) -> None:
    own = {"features_extractor_kwargs": {}, "slate_entropy_scale": None, "learn_slate_order": False}
    for data in ({"policy_kwargs": own}, {}):
        assert safe_custom_objects(tmp_path / "m.zip", data, REBUILT)["clip_range"] is None


# ------------------------------------------------------------------------------ load_model (a tiny model)
@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Any]:
    """A tiny untrained model saved as `crs train` saves one, with what `load_model` needs to load it."""
    catalog = load_catalog("persona_world", **SMALL)
    model, ranker, config = model_for(catalog, hidden=16)
    path = tmp_path_factory.mktemp("model") / "model.zip"
    atomic_save(model, path)
    sizes = model.get_env().get_attr("sizes", indices=[0])[0]
    return {
        "path": path,
        "model": model,
        "config": config,
        "kwargs": {
            "observation_space": model.observation_space,
            "action_space": model.action_space,
            "clip_range": config.clip_range,
            "encoder": encoder_kwargs(sizes, ranker, config),
        },
    }


def _copy(saved: dict[str, Any], where: Path) -> Path:
    path = where / "model.zip"
    path.write_bytes(saved["path"].read_bytes())
    return path


def test_the_loaded_model_takes_the_run_s_clip_range_and_overrides_not_the_file_s(saved) -> None:
    kwargs = {**saved["kwargs"], "clip_range": 0.125}
    model = load_model(saved["path"], **kwargs, overrides={"learning_rate": 0.0625, **ACTING_OVERRIDES})
    assert model.clip_range(1.0) == 0.125 and model.clip_range(0.0) == 0.125
    assert model.learning_rate == 0.0625 and model.n_steps == 1 and model.n_envs == 1
    for key, value in saved["model"].policy.state_dict().items():  # the file's weights, exactly
        torch.testing.assert_close(model.policy.state_dict()[key], value, rtol=0, atol=0)


@pytest.mark.parametrize("entry", ["policy.pth", "policy.optimizer.pth"])
@pytest.mark.parametrize("wrap", ["plain pickle", "torch.save"])
def test_a_pickled_payload_in_the_weights_never_runs(saved, tmp_path: Path, entry: str, wrap: str) -> None:
    """SB3 reads the weights with torch's weights-only loader: refused in one line of ours."""
    marker = tmp_path / "pwned"
    payload = _pickled(marker) if wrap == "plain pickle" else _torch_bytes(_Payload(marker))
    path = _rewrite(_copy(saved, tmp_path), lambda e: e.update({entry: payload}))
    with warnings.catch_warnings(record=True) as shown, pytest.raises(UnsafeModelFileError) as refused:
        warnings.simplefilter("always")
        load_model(path, **saved["kwargs"])
    assert_refused_in_one_line(str(refused.value), shown, wrap)
    assert not marker.exists()


def test_a_resumed_model_takes_its_rollout_sizes_from_the_run_not_the_checkpoint(
    saved, tmp_path: Path
) -> None:
    """A checkpoint edited to a batch of 0 (SB3's update loop would never end) and another rollout length
    trains on with the run's own sizes and settings, as `crs train --resume` loads it."""
    config = saved["config"]
    path = _rewrite(
        _copy(saved, tmp_path), _edit_data(lambda d: d.update(batch_size=0, n_steps=7, n_epochs=99))
    )
    model = load_model(
        path, **saved["kwargs"], env=saved["model"].get_env(), overrides=training_overrides(config)
    )
    assert (model.batch_size, model.n_steps, model.n_epochs) == (64, 32, config.n_epochs)
    assert (config.batch_size, config.n_steps) == (64, 32)  # the run's, as `model_for` set them
    assert model.rollout_buffer.buffer_size == 32


def _forge_crc(path: Path, name: str, crc: int) -> None:
    """Make the zip `path` declare `crc` as the CRC-32 of the entry `name` in both of its headers."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        offset, central = archive.getinfo(name).header_offset, archive.start_dir
    struct.pack_into("<I", raw, offset + 14, crc)  # local header
    while raw[central + 46 : central + 46 + len(name)] != name.encode():
        central = raw.index(b"PK\x01\x02", central + 4)
    struct.pack_into("<I", raw, central + 16, crc)  # central directory
    path.write_bytes(bytes(raw))


def test_a_model_whose_data_hides_50_mb_past_its_declared_size_loads_as_declared(
    saved, tmp_path: Path
) -> None:
    """A re-zipped model whose ``data`` entry deflates the JSON and then 50 MB of spaces, its headers
    declaring the JSON alone with a CRC forged to match: every check of the declared entry passes, so
    what SB3 reads must be that entry, not the stream (``ZipFile.read`` would inflate all 50 MB)."""
    with zipfile.ZipFile(saved["path"]) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    declared = entries["data"]
    path = _write_zip(
        tmp_path / "m.zip", entries | {"data": declared + b" " * 50_000_000}, zipfile.ZIP_DEFLATED
    )
    _lying_size(path, "data", len(declared))
    _forge_crc(path, "data", zlib.crc32(declared))
    tracemalloc.start()
    try:
        model = load_model(path, **saved["kwargs"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000, f"{peak:,} bytes held loading a model of {len(declared):,} bytes of data"
    for key, value in saved["model"].policy.state_dict().items():
        torch.testing.assert_close(model.policy.state_dict()[key], value, rtol=0, atol=0)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_one_non_finite_weight_is_refused_naming_it(saved, tmp_path: Path, value: float) -> None:
    """One bad number among finite ones is enough (not only a tensor that is all NaN)."""
    model = load_model(saved["path"], **saved["kwargs"])
    weight = model.policy.value_net.weight
    with torch.no_grad():
        weight[0, 0] = value
    assert non_finite_weights(model) == ["value_net.weight"]
    path = tmp_path / "bad.zip"
    atomic_save(model, path)
    with pytest.raises(ModelFileError, match=r"non-finite \(NaN or inf\) weights in value_net\.weight"):
        load_model(path, **saved["kwargs"])


def test_a_finite_model_has_no_non_finite_weights(saved) -> None:
    assert non_finite_weights(saved["model"]) == []


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.update(policy_kwargs=[1]),
        lambda d: d.update(policy_kwargs="os.system"),
        lambda d: d["policy_kwargs"].update(features_extractor_kwargs="os.system"),
        lambda d: d["policy_kwargs"].update(features_extractor_kwargs=[1, 2]),
        lambda d: d.pop("policy_kwargs"),
    ],
    ids=["kwargs list", "kwargs string", "encoder string", "encoder list", "no kwargs"],
)
def test_encoder_settings_of_another_shape_are_refused_by_name(saved, tmp_path: Path, change) -> None:
    """No AttributeError escapes: a file without an encoder mapping has no sizes, which are named."""
    path = _rewrite(_copy(saved, tmp_path), _edit_data(change))
    with pytest.raises(ModelFileError, match=r"encoder of other sizes .*n_users None, not"):
        load_model(path, **saved["kwargs"])


def test_another_number_of_personas_points_at_a_replaced_ranker(saved, tmp_path: Path) -> None:
    n = saved["kwargs"]["encoder"]["n_personas"]
    path = _rewrite(
        _copy(saved, tmp_path),
        _edit_data(lambda d: d["policy_kwargs"]["features_extractor_kwargs"].update(n_personas=n + 2)),
    )
    with pytest.raises(ModelFileError, match=rf"n_personas {n + 2}, not {n}\).*ranker was replaced") as error:
        load_model(path, **saved["kwargs"])
    assert "and the ranker it was trained with" in str(error.value)


def test_other_sizes_than_personas_do_not_blame_the_ranker(saved, tmp_path: Path) -> None:
    path = _rewrite(
        _copy(saved, tmp_path),
        _edit_data(lambda d: d["policy_kwargs"]["features_extractor_kwargs"].update(n_items=7)),
    )
    with pytest.raises(ModelFileError, match=r"n_items 7, not") as error:
        load_model(path, **saved["kwargs"])
    assert "ranker" not in str(error.value).split("): ")[-1]


def test_a_plain_string_in_a_rebuilt_field_is_replaced_not_read(saved, tmp_path: Path) -> None:
    """A file's policy_class naming another class (or a module) is never used: the run's class is."""
    path = _rewrite(_copy(saved, tmp_path), _edit_data(lambda d: d.update(policy_class="os.system")))
    model = load_model(path, **saved["kwargs"])
    assert type(model.policy).__name__ == "SlatePolicy"


# ------------------------------------------------------------------------------------------ model.py
def test_training_env_seeds_keep_seed_0_and_never_collide_across_neighbouring_seeds() -> None:
    assert [training_env_seed(0, k) for k in range(3)] == [0, 1, 2]
    assert training_env_seed(1, 0) == 2**32 and training_env_seed(3, 5) == 3 * 2**32 + 5
    seeds = {training_env_seed(s, k) for s in range(4) for k in range(4)}
    assert len(seeds) == 16


class _SeedRecorder(gym.Env):
    observation_space = gym.spaces.Discrete(1)
    action_space = gym.spaces.Discrete(1)

    def __init__(self) -> None:
        self.seeds: list[int | None] = []

    def reset(self, *, seed=None, options=None):
        self.seeds.append(seed)
        return 0, {}


def test_own_seed_resets_env_k_of_base_seed_s_with_its_own_seed() -> None:
    """SB3 passes base + k to env k: the env is reset with training_env_seed(base, k); None stays None."""
    inner = _SeedRecorder()
    env = _OwnSeed(inner, index=3)
    env.reset(seed=10 + 3)
    env.reset()
    assert inner.seeds == [10 * 2**32 + 3, None]


def test_pretrained_arrays_of_a_transe_ranker_give_each_user_one_persona() -> None:
    catalog = load_catalog("persona_world", **SMALL)
    rng = np.random.default_rng(0)
    user, item, aspect = (
        rng.normal(size=(n, 4)) for n in (catalog.n_users, catalog.n_items, catalog.n_aspects)
    )
    arrays = pretrained_arrays(TransERanker(user, item, aspect, catalog))
    assert arrays is not None
    assert arrays["personas"].shape == (catalog.n_users, 1, 4)
    np.testing.assert_array_equal(arrays["personas"][:, 0, :], user)
    np.testing.assert_array_equal(arrays["item"], item)
    np.testing.assert_array_equal(arrays["aspect"], aspect)
    np.testing.assert_array_equal(arrays["log_prior"], np.zeros((catalog.n_users, 1)))
    assert pretrained_arrays(PopularityRanker(catalog)) is None


SIZES = {"n_users": 12, "n_items": 40, "n_aspects": 6, "n_categories": 2, "n_probes": 0}


def test_encoder_kwargs_without_pretrained_embeddings_train_them_at_the_config_s_width() -> None:
    catalog = load_catalog("persona_world", **SMALL)
    config = RLConfig(embed_dim=24, hidden=16, train_embeddings=False)
    kwargs = encoder_kwargs(SIZES, PopularityRanker(catalog), config)
    assert kwargs["n_personas"] == 1 and kwargs["embed_dim"] == 24 and kwargs["hidden"] == 16
    assert kwargs["train_embeddings"] is True  # nothing pre-trained: random embeddings must learn
    assert encoder_kwargs({**SIZES, "n_probes": 5}, PopularityRanker(catalog), config)["n_personas"] == 5
    assert {key: kwargs[key] for key in ("n_users", "n_items", "n_aspects", "n_categories")} == {
        key: SIZES[key] for key in ("n_users", "n_items", "n_aspects", "n_categories")
    }


@pytest.mark.parametrize("train", [True, False])
def test_encoder_kwargs_of_a_persona_ranker_take_its_personas_and_width(train: bool) -> None:
    catalog = load_catalog("persona_world", **SMALL)
    ranker = random_persona_ranker(catalog, k=3, d=8)
    kwargs = encoder_kwargs(SIZES, ranker, RLConfig(embed_dim=24, train_embeddings=train))
    assert kwargs["n_personas"] == 3 and kwargs["embed_dim"] == 8 and kwargs["train_embeddings"] is train


def test_a_fresh_model_starts_from_the_persona_ranker_s_embeddings() -> None:
    """build_model copies the ranker's tables into the encoder: the priors as they are, the item and
    aspect tables rescaled (so each weight is the ranker's value times one common factor)."""
    catalog = load_catalog("persona_world", **SMALL)
    ranker = random_persona_ranker(catalog, k=3, d=8)
    model, _, _ = model_for(catalog, ranker=ranker, hidden=16)
    encoder = model.policy.features_extractor
    np.testing.assert_allclose(encoder.log_prior.weight.detach().numpy(), ranker.log_prior, rtol=1e-6)
    for table, values in ((encoder.item_emb, ranker.item), (encoder.aspect_emb, ranker.aspect)):
        ratio = table.weight.detach().numpy() / np.asarray(values)
        np.testing.assert_allclose(ratio, np.full_like(ratio, ratio.flat[0]), rtol=1e-4)


# ------------------------------------------------------------------------------------------ setting.py
def test_check_setting_returns_a_valid_setting_and_names_the_valid_ones_otherwise() -> None:
    for setting in SETTINGS:
        assert check_setting(setting) == setting
    for bad in ("Binary", "multiple-choice", ""):
        with pytest.raises(CRSError, match=f"unknown setting {bad!r}; valid settings: binary, enumerated"):
            check_setting(bad)


def test_only_multiple_choice_offers_probes_and_is_the_multi_target_default() -> None:
    assert [offers_probes(s) for s in SETTINGS] == [s == "multiple_choice" for s in SETTINGS]
    assert default_setting(single_target=True) == "binary"
    assert default_setting(single_target=False) == "multiple_choice"


def test_a_loaded_model_that_goes_on_learning_leaves_no_folder_in_the_temporary_directory(
    saved, tmp_path, monkeypatch
) -> None:
    """SB3 makes an empty SB3-<date> folder in the temporary directory on each `learn` of a model with no
    logger of its own (the returning-users fine-tune benchmark left one per run)."""
    monkeypatch.delenv("SB3_LOGDIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    model = load_model(saved["path"], **saved["kwargs"], env=saved["model"].get_env())
    model.learn(64)
    assert model.num_timesteps == 64 and list(tmp_path.iterdir()) == []
