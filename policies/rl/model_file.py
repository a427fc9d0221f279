"""Loading SB3 model zips (``best_model.zip``, ``model.zip``, ``checkpoint.zip``) without running code.

SB3 stores some fields of a model zip's ``data`` JSON as base64 cloudpickle (``":serialized:"``) and
`BaseAlgorithm.load` unpickles them, so a shared zip could run any code when loaded. Here every such
field is replaced, through SB3's ``custom_objects``, by a value rebuilt from the run's own config and
env before SB3 reads the file; a zip holding a pickled field outside that list is refused. SB3 also
copies every plain field onto the model, and acts on some (a file's ``env`` string goes to `gym.make`,
which imports the module it names), so every other field must be one `crs train` writes
(`PLAIN_FIELDS`), with its JSON type. The tensors (``*.pth``) are read by SB3 with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import json
import logging
import pickle
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from gymnasium import spaces
from sb3_contrib import MaskablePPO
from stable_baselines3.common.vec_env import VecEnv

from policies.rl.config import RLConfig
from policies.rl.model import set_logger
from policies.rl.policy import SlatePolicy
from policies.rl.run_files import POLICY_META, RUN_ID_ENTRY, PolicyMeta
from policies.weights_only import load_tensors, quiet_weights_only, refusal
from simulators.errors import CRSError

logger = logging.getLogger(__name__)

SERIALIZED = ":serialized:"
# Fields SB3 pickles that carry no learned state: None makes SB3 rebuild them (the rollout buffer
# class from the observation space, the lr schedule from learning_rate) or start them afresh (the
# last observation, which a resumed run resets anyway, and the episode-statistics buffers).
RESET_FIELDS = (
    "rollout_buffer_class",
    "lr_schedule",
    "action_noise",
    "_last_obs",
    "_last_episode_starts",
    "_last_original_obs",
    "ep_info_buffer",
    "ep_success_buffer",
)
POLICY_KWARGS = frozenset({"features_extractor_kwargs", "slate_entropy_scale", "learn_slate_order"})
_NUMBER = (int, float)
# Every other field SB3 writes for a `MaskablePPO` of `crs train`, with the JSON types it may hold. SB3
# copies every field of the file onto the model, and some act when loading (a file's ``env`` string is
# passed to `gym.make`, which imports the module it names), so a field outside this list is refused.
PLAIN_FIELDS: dict[str, tuple[type, ...]] = {
    "verbose": (int,),
    "num_timesteps": (int,),
    "_total_timesteps": (int,),
    "_num_timesteps_at_start": (int,),
    "seed": (int, type(None)),
    "start_time": _NUMBER,
    "learning_rate": _NUMBER,
    "tensorboard_log": (str, type(None)),  # unused: `set_logger` always sets the logger
    "_episode_num": (int,),
    "use_sde": (bool,),
    "sde_sample_freq": (int,),
    "_current_progress_remaining": _NUMBER,
    "_stats_window_size": (int,),
    "_n_updates": (int,),
    "n_envs": (int,),
    "n_steps": (int,),
    "gamma": _NUMBER,
    "gae_lambda": _NUMBER,
    "ent_coef": _NUMBER,
    "vf_coef": _NUMBER,
    "max_grad_norm": _NUMBER,
    "rollout_buffer_kwargs": (dict,),  # must be empty: checked in `safe_custom_objects`
    "batch_size": (int,),
    "n_epochs": (int,),
    "clip_range_vf": (type(None),),
    "normalize_advantage": (bool,),
    "target_kl": (*_NUMBER, type(None)),
}


class ModelFileError(CRSError):
    """A model zip is missing, damaged, or not a model of this run."""


class UnsafeModelFileError(ModelFileError):
    """A model zip holds a pickled field that loading would have to execute."""


VARIABLES = "pytorch_variables.pth"
ENTRIES = frozenset(
    {
        "data",
        VARIABLES,
        "policy.pth",
        "policy.optimizer.pth",
        "_stable_baselines3_version",
        "system_info.txt",
        RUN_ID_ENTRY,
    }
)
"""The entries of a model zip SB3 writes for a `MaskablePPO`, and the run id `crs train` adds: a zip
with another is refused (SB3 would load an ``X.pth`` into the model's attribute X)."""
DATA_ENTRIES = frozenset({"data", VARIABLES})
"""The entries `read_model_data` reads (the weights are left to `load_model`)."""
MAX_INFLATION = 100
"""An entry may hold at most this many times its stored size (SB3 stores them uncompressed)."""
READABLE_COMPRESSION = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
"""How an entry may be compressed: as SB3 writes it (stored), or deflated by a re-zip. Deflate is
inflated a bounded piece at a time; bzip2 and lzma are not, so one small piece could fill the memory."""
DAMAGED_ZIP = (
    zipfile.BadZipFile,
    zlib.error,  # a damaged deflate stream
    pickle.UnpicklingError,  # a pickled object torch's weights-only loader refuses
    KeyError,
    OSError,
    ValueError,
    RecursionError,
    EOFError,
    RuntimeError,
)


def _check_entries(archive: zipfile.ZipFile, path: Path) -> None:
    names = {info.filename for info in archive.infolist()}
    if names - ENTRIES or not {"data", VARIABLES, "policy.pth"} <= names:
        raise UnsafeModelFileError(
            f"model file {path} holds the entries {sorted(names)}, where `crs train` writes "
            f"{sorted(ENTRIES)}; refused. Only load model files written by `crs train`"
        )
    for info in archive.infolist():
        if info.compress_type not in READABLE_COMPRESSION:
            raise UnsafeModelFileError(
                f"model file {path}: entry {info.filename} is compressed with zip method "
                f"{info.compress_type}, where `crs train` stores entries uncompressed (deflated ones are "
                "read too); refused, as inflating it could fill the memory"
            )
        if info.file_size > MAX_INFLATION * max(info.compress_size, 1 << 16):
            raise UnsafeModelFileError(
                f"model file {path}: entry {info.filename} inflates from {info.compress_size:,} to "
                f"{info.file_size:,} bytes, which reading would hold in memory; refused"
            )


def read_model_data(path: Path) -> dict[str, Any]:
    """The ``data`` JSON of an SB3 model zip, read without unpickling anything.

    Raises:
        ModelFileError: The file is missing, not a zip, or has no readable ``data`` mapping.
    """
    return _model_data(_model_entries(_read_model_file(path), path, DATA_ENTRIES), path)


def _read_model_file(path: Path) -> bytes:
    """The bytes of a model zip, read once: what is checked is what SB3 then loads."""
    try:
        return path.read_bytes()
    except OSError:
        raise ModelFileError(f"model file {path} not found or unreadable") from None


def _model_entries(raw: bytes, path: Path, names: frozenset[str] = ENTRIES) -> dict[str, bytes]:
    """The entries `names` of the model zip `raw` (read from `path`), each inflated to at most the size
    its header declares and checked against its CRC, once `_check_entries` has bounded the sizes of all:
    a stream that understates its size is cut there, never inflated whole into memory (``ZipFile.read``
    would).

    Raises:
        ModelFileError: Not a zip, a damaged entry, or one shorter than its header says.
        UnsafeModelFileError: See `_check_entries`.
    """
    entries = {}
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            _check_entries(archive, path)
            for info in archive.infolist():
                if info.filename not in names:
                    continue
                with archive.open(info) as stream:
                    content = stream.read(info.file_size)  # a piece at a time, the CRC checked at the end
                if len(content) != info.file_size:
                    raise ModelFileError(
                        f"model file {path} is damaged (entry {info.filename} holds {len(content):,} bytes, "
                        f"its header says {info.file_size:,}); use another checkpoint or train again"
                    )
                entries[info.filename] = content
    except CRSError:
        raise
    except DAMAGED_ZIP as error:
        raise _damaged(path, error) from None
    return entries


def _damaged(path: Path, error: BaseException) -> ModelFileError:
    refused = refusal(error)
    if refused is not None:
        return UnsafeModelFileError(
            f"model file {path} refused: {refused}. Only load model files written by `crs train`"
        )
    return ModelFileError(
        f"model file {path} is damaged ({type(error).__name__}: {error}); use another checkpoint or train "
        "again"
    )


def _repacked(entries: Mapping[str, bytes]) -> bytes:
    """A zip of `entries`, stored uncompressed: what SB3 loads is exactly what was checked."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _model_data(entries: Mapping[str, bytes], path: Path) -> dict[str, Any]:
    """The ``data`` JSON of the model zip `path` (`read_model_data`) from its checked `entries`
    (`_model_entries`), once ``pytorch_variables.pth`` is found empty."""
    try:
        variables = load_tensors(io.BytesIO(entries[VARIABLES]))
        if variables is not None and not (isinstance(variables, dict) and not variables):
            # PPO saves none; SB3 would set each name it holds on the model
            raise UnsafeModelFileError(
                f"model file {path}: {VARIABLES} holds {repr(variables)[:60]}, where `crs train` saves "
                "nothing; loading would set it on the model: refused. Only load model files written by "
                "`crs train`"
            )
        data = json.loads(entries["data"])
    except CRSError:
        raise
    except DAMAGED_ZIP as error:
        raise _damaged(path, error) from None
    if not isinstance(data, dict):
        raise ModelFileError(f"model file {path}: its 'data' entry is not a mapping")
    return data


def safe_custom_objects(
    path: Path, data: dict[str, Any], rebuilt: dict[str, Any], overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """SB3 ``custom_objects`` that leave nothing of the model zip `path` to unpickle or act on.

    Args:
        path: The model zip (named in errors).
        data: Its ``data`` JSON (`read_model_data`).
        rebuilt: Values rebuilt from the run's config for the fields SB3 pickles (policy_class,
            observation_space, action_space, clip_range, ...).
        overrides: Further plain values to use instead of the file's (e.g. a new learning rate).

    Raises:
        UnsafeModelFileError: A pickled field that nothing rebuilds, a field `crs train` does not write
            or of another type, or policy_kwargs with other keys.
    """
    objects = {key: None for key in RESET_FIELDS} | rebuilt | (overrides or {})
    for key, value in data.items():
        if (key in objects and key not in PLAIN_FIELDS) or key == "policy_kwargs":
            continue  # rebuilt (plain fields are checked even where overridden: a file is whole or refused)
        if isinstance(value, dict) and SERIALIZED in value:
            raise UnsafeModelFileError(
                f"model file {path}: field {key!r} holds a pickled Python object, which loading would "
                f"execute; refused (only {', '.join(sorted(objects))} are rebuilt from the run's config). "
                "Only load model files written by `crs train`"
            )
        if key not in PLAIN_FIELDS:
            raise UnsafeModelFileError(
                f"model file {path}: field {key!r} is not one `crs train` writes, and loading would act on "
                "it; refused. Only load model files written by `crs train`"
            )
        kinds = PLAIN_FIELDS[key]
        if not isinstance(value, kinds) or (key == "rollout_buffer_kwargs" and value):
            expected = " or ".join("null" if kind is type(None) else kind.__name__ for kind in kinds)
            raise UnsafeModelFileError(
                f"model file {path}: field {key!r} holds {repr(value)[:60]}, where `crs train` writes "
                f"{'{}' if kinds == (dict,) else expected}; refused. Only load model files written by "
                "`crs train`"
            )
    kwargs = data.get("policy_kwargs", {})
    if not isinstance(kwargs, dict) or SERIALIZED in kwargs or set(kwargs) - POLICY_KWARGS:
        raise UnsafeModelFileError(
            f"model file {path}: policy_kwargs must be plain settings with keys "
            f"{sorted(POLICY_KWARGS)}, found {sorted(kwargs) if isinstance(kwargs, dict) else kwargs!r}"
        )
    return objects


ACTING_OVERRIDES: dict[str, Any] = {"n_envs": 1, "n_steps": 1}
"""`load_model` overrides for a model that only acts: no rollout buffer of the file's sizes is built."""


def training_overrides(config: RLConfig) -> dict[str, Any]:
    """`load_model` overrides for a model that trains on (a resumed run): the run's `config` wins over
    the file's values, both the settings a resume may change (learning rate, entropy coefficient, epochs,
    target KL) and the rollout's sizes, so a file cannot set a batch of 0 (SB3's update would never end)
    nor a rollout buffer of its own size."""
    return {
        "learning_rate": config.learning_rate,
        "ent_coef": config.ent_coef,
        "n_epochs": config.n_epochs,
        "target_kl": config.target_kl,
        "n_steps": config.n_steps,
        "batch_size": config.batch_size,
    }


ENCODER_SIZES = ("n_users", "n_items", "n_aspects", "n_categories", "n_personas", "embed_dim", "hidden")
"""The encoder arguments that size its network."""


def _check_encoder_sizes(path: Path, data: dict[str, Any], encoder: Mapping[str, Any]) -> None:
    """Refuse the model zip `path` (its ``data`` JSON `data`) whose encoder sizes (`ENCODER_SIZES`) are
    not `encoder`'s, before anything builds its network (`load_model`).

    Raises:
        ModelFileError: Other sizes (named).
    """
    policy_kwargs = data.get("policy_kwargs")
    kwargs = policy_kwargs.get("features_extractor_kwargs") if isinstance(policy_kwargs, dict) else None
    found: dict[str, Any] = kwargs if isinstance(kwargs, dict) else {}
    other = {
        key: found.get(key) for key in ENCODER_SIZES if key in encoder and found.get(key) != encoder[key]
    }
    if other:
        # the personas come from the run's ranker, not from its config: a ranker replaced since training
        ranker = " or the run's ranker was replaced by one of other personas" if "n_personas" in other else ""
        fix = " and the ranker it was trained with" if ranker else ""
        raise ModelFileError(
            f"model file {path} has an encoder of other sizes than the run's config and ranker give "
            f"({', '.join(f'{key} {value!r}, not {encoder[key]!r}' for key, value in other.items())}): it "
            f"belongs to another run{ranker}; use this run's own model files{fix}"
        )


def _check_run(path: Path, written_by: bytes | None) -> None:
    """Refuse the model zip `path` of a run folder when the run id it holds (`RUN_ID_ENTRY`) is not the
    folder's (policy.json's ``run_id``): a best_model.zip copied from another run of the same sizes was
    used without a word. A zip outside a run folder, or of a run older than the id, is not checked; a
    zip without an id in a run that has one loads with a logged warning (written before the id was).

    Raises:
        ModelFileError: Another run's id (both named).
    """
    if not (path.parent / POLICY_META).is_file():
        return
    expected = PolicyMeta.read(path.parent).run_id
    if expected is None:
        return
    if written_by is None:
        logger.warning("model file %s holds no run id (written before runs had one): not checked", path)
        return
    found = written_by.decode("utf-8", errors="replace")
    if found != expected:
        raise ModelFileError(
            f"model file {path} was written by another run (run id {found!r}, this run's is {expected!r}): "
            "use this run's own model files, or copy the whole run folder"
        )


def non_finite_weights(model: MaskablePPO) -> list[str]:
    """Names of the policy's weights (parameters and buffers) holding NaN or inf."""
    return [name for name, tensor in model.policy.state_dict().items() if not torch.isfinite(tensor).all()]


def load_model(
    path: Path,
    *,
    observation_space: spaces.Space,
    action_space: spaces.Space,
    clip_range: float,
    encoder: Mapping[str, Any],
    env: VecEnv | None = None,
    overrides: dict[str, Any] | None = None,
) -> MaskablePPO:
    """Load a `MaskablePPO` model zip written by `crs train`, unpickling nothing from the file.

    Args:
        path: The model zip.
        observation_space: The wrapped env's observation space (rebuilt from the run's config).
        action_space: The wrapped env's action space.
        clip_range: The run's PPO clip range.
        env: The vectorised env to continue training in (None to act only).
        encoder: The encoder arguments the run's config gives (`policies.rl.model.encoder_kwargs`): the
            file's sizes (`ENCODER_SIZES`) must be these, so a file cannot make loading build a network
            of its own size.
        overrides: Plain values to use instead of the file's (e.g. learning_rate, ent_coef;
            `ACTING_OVERRIDES` for a model that only acts).

    Raises:
        UnsafeModelFileError: The zip holds a pickled field nothing rebuilds, or a field `crs train`
            does not write.
        ModelFileError: The zip is damaged, does not fit the run's spaces, or holds non-finite weights.
    """
    rebuilt = {
        "policy_class": SlatePolicy,
        "observation_space": observation_space,
        "action_space": action_space,
        "clip_range": clip_range,
    }
    entries = _model_entries(_read_model_file(path), path)
    _check_run(path, entries.get(RUN_ID_ENTRY))
    data = _model_data(entries, path)
    _check_encoder_sizes(path, data, encoder)
    objects = safe_custom_objects(path, data, rebuilt, overrides)
    try:
        repacked = io.BytesIO(_repacked(entries))
        with quiet_weights_only():
            model = MaskablePPO.load(repacked, env=env, device="cpu", custom_objects=objects)
    except CRSError:
        raise
    except Exception as error:  # SB3 and torch raise many types for a damaged or foreign zip
        if refusal(error) is not None:  # a weights entry holding an object: worded, not torch's advice
            raise _damaged(path, error) from None
        raise ModelFileError(
            f"model file {path} cannot be loaded for this run ({type(error).__name__}: {error}); "
            "it is damaged or belongs to another run"
        ) from None
    bad = non_finite_weights(model)
    if bad:
        raise ModelFileError(
            f"model file {path} holds non-finite (NaN or inf) weights in {', '.join(bad[:5])}; "
            "use an earlier checkpoint"
        )
    set_logger(model, None)  # a model that goes on learning logs nowhere until told where (`crs train`: tb/)
    return model
