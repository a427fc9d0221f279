"""Loading SB3 model zips (``best_model.zip``, ``model.zip``, ``checkpoint.zip``) without running code.

SB3 stores some fields of a model zip's ``data`` JSON as base64 cloudpickle (``":serialized:"``) and
`BaseAlgorithm.load` unpickles them, so a shared zip could run any code when loaded. Here every such
field is replaced, through SB3's ``custom_objects``, by a value rebuilt from the run's own config and
env before SB3 reads the file; a zip holding a pickled field outside that list is refused. The
tensors (``*.pth``) are read by SB3 with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import torch
from gymnasium import spaces
from sb3_contrib import MaskablePPO
from stable_baselines3.common.vec_env import VecEnv

from policies.rl.policy import SlatePolicy
from simulators.errors import CRSError

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


class ModelFileError(CRSError):
    """A model zip is missing, damaged, or not a model of this run."""


class UnsafeModelFileError(ModelFileError):
    """A model zip holds a pickled field that loading would have to execute."""


def read_model_data(path: Path) -> dict[str, Any]:
    """The ``data`` JSON of an SB3 model zip, read without unpickling anything.

    Raises:
        ModelFileError: The file is missing, not a zip, or has no readable ``data`` mapping.
    """
    if not path.is_file():
        raise ModelFileError(f"model file {path} not found")
    try:
        with zipfile.ZipFile(path) as archive:
            text = archive.read("data")
        data = json.loads(text)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, RecursionError, EOFError) as error:
        raise ModelFileError(
            f"model file {path} is damaged ({type(error).__name__}: {error}); use another checkpoint "
            "or train again"
        ) from None
    if not isinstance(data, dict):
        raise ModelFileError(f"model file {path}: its 'data' entry is not a mapping")
    return data


def safe_custom_objects(
    path: Path, rebuilt: dict[str, Any], overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """SB3 ``custom_objects`` that leave nothing of `path` to unpickle.

    Args:
        path: The model zip.
        rebuilt: Values rebuilt from the run's config for the fields SB3 pickles (policy_class,
            observation_space, action_space, clip_range, ...).
        overrides: Further plain values to use instead of the file's (e.g. a new learning rate).

    Raises:
        UnsafeModelFileError: A pickled field that nothing rebuilds, or policy_kwargs with other keys.
    """
    data = read_model_data(path)
    objects = {key: None for key in RESET_FIELDS} | rebuilt | (overrides or {})
    for key, value in data.items():
        if isinstance(value, dict) and SERIALIZED in value and key not in objects:
            raise UnsafeModelFileError(
                f"model file {path}: field {key!r} holds a pickled Python object, which loading would "
                f"execute; refused (only {', '.join(sorted(objects))} are rebuilt from the run's config). "
                "Only load model files written by `crs train`"
            )
    kwargs = data.get("policy_kwargs", {})
    if not isinstance(kwargs, dict) or SERIALIZED in kwargs or set(kwargs) - POLICY_KWARGS:
        raise UnsafeModelFileError(
            f"model file {path}: policy_kwargs must be plain settings with keys "
            f"{sorted(POLICY_KWARGS)}, found {sorted(kwargs) if isinstance(kwargs, dict) else kwargs!r}"
        )
    return objects


def non_finite_weights(model: MaskablePPO) -> list[str]:
    """Names of the policy's weights (parameters and buffers) holding NaN or inf."""
    return [name for name, tensor in model.policy.state_dict().items() if not torch.isfinite(tensor).all()]


def load_model(
    path: Path,
    *,
    observation_space: spaces.Space,
    action_space: spaces.Space,
    clip_range: float,
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
        overrides: Plain values to use instead of the file's (e.g. learning_rate, ent_coef).

    Raises:
        UnsafeModelFileError: The zip holds a pickled field nothing rebuilds.
        ModelFileError: The zip is damaged, does not fit the run's spaces, or holds non-finite weights.
    """
    rebuilt = {
        "policy_class": SlatePolicy,
        "observation_space": observation_space,
        "action_space": action_space,
        "clip_range": clip_range,
    }
    objects = safe_custom_objects(path, rebuilt, overrides)
    try:
        model = MaskablePPO.load(path, env=env, device="cpu", custom_objects=objects)
    except CRSError:
        raise
    except Exception as error:  # SB3 and torch raise many types for a damaged or foreign zip
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
    return model
