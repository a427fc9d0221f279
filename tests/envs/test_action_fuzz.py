"""Attacks on the env's action parsing: every action outside the action space raises
`InvalidActionError` (never a bare TypeError / IndexError / OverflowError), is never coerced, and
leaves the dialogue exactly as it was; every action inside it is carried out.

The fuzz sends 20,000 actions in all (`FUZZ_TOTAL`) to the registered envs: 4,000 per env, 2,800
to the env itself and 1,200 through Gymnasium's SyncVectorEnv (2 envs x 400 steps) and
AsyncVectorEnv (2 envs x 200 steps).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401 (registers the crs/* ids)
from envs import ConversationEnv, InvalidActionError, ask, make_env, probe, recommend
from envs.registry import REGISTERED
from simulators.catalog import Taxonomy
from simulators.goals import PairGoals
from simulators.users import SingleTargetUser
from tests.envs.conftest import tiny_catalog

WORLD = {"n_users": 30, "n_items": 200, "interactions_per_user": 10}

SINGLE_ACTIONS = 2_800  # per env, sent to the env itself
N_VECTOR_ENVS = 2
SYNC_STEPS = 400  # per env: 400 vector steps x 2 envs = 800 actions
ASYNC_STEPS = 200  # per env: 200 x 2 = 400 actions
ASYNC_BAD_STEPS = (60, 140)  # an error kills an AsyncVectorEnv worker, so only a few, rebuilt after each
FUZZ_TOTAL = len(REGISTERED) * (SINGLE_ACTIONS + N_VECTOR_ENVS * (SYNC_STEPS + ASYNC_STEPS))

# Values that are never an integer scalar: kind, persona and category reject them wherever they are.
BAD_SCALARS: tuple[object, ...] = (
    None,
    [],
    [0],
    (1,),
    2.7,
    3.0,
    np.float32(1.0),
    np.float64(2.0),
    True,
    np.bool_(False),
    "1",
    "ask",
    float("nan"),
    float("inf"),
    -float("inf"),
    2**70,
    -(2**70),
    np.uint64(2**64 - 1),
    np.array([1]),
    np.array([[1]]),
    np.array(1.0),
    1j,
    b"1",
    {"kind": 0},
)
# Values that are never a flat list of integer ids: aspects and items reject them wherever they are.
BAD_LISTS: tuple[object, ...] = (
    None,
    1.9,
    3,
    np.int64(3),
    "12",
    "x",
    [None],
    ["x"],
    [1.9],
    [3.0],
    [True],
    [np.bool_(True)],
    [float("nan")],
    [float("inf")],
    [2**70],
    [-(2**70)],
    [[1, 2]],
    [[1], [2, 3]],
    [np.array([1])],
    [0, 1, {"x": 1}],
    np.array([1.0]),
    np.array([np.nan]),
    np.array([[1]]),
    np.array([True]),
    np.array([1], dtype=object),
    np.array(["1"]),
    np.array([2**64 - 1], dtype=np.uint64),
    {1, 2},
    {"a": 1},
)
NOT_ACTIONS: tuple[object, ...] = (None, 0, 2.0, "ask 3", [0, [1], 0, [2]], np.zeros(4), ("kind", 0))
INT_DTYPES = (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)


# ------------------------------------------------------------------------------------------ helpers
def world_env(**kwargs: Any) -> ConversationEnv:
    """A small persona world: multiple-choice questions (5 per question), 4 persona slots."""
    return make_env("persona_world", world_kwargs=WORLD, **kwargs)


def enumerated_env() -> ConversationEnv:
    """The tiny catalogue with two categories, c0 = {0, 1, 3} and c1 = {2}: asks name a category."""
    catalog = tiny_catalog(Taxonomy(parent_of=np.array([0, 0, 1, 0]), parent_names=("c0", "c1")))
    return ConversationEnv(
        catalog, SingleTargetUser(catalog), PairGoals(catalog, "test"), setting="enumerated"
    )


def snapshot(env: ConversationEnv) -> tuple[object, ...]:
    """Everything a step may change: the dialogue state, the end flag and the env's generator."""
    state = env.state
    masks = ("accepted", "rejected", "asked_categories", "rejected_items", "candidates")
    return (
        state.user,
        state.turn,
        state.last_answer,
        tuple(state.history),
        tuple(getattr(state, name).tobytes() for name in masks),
        env.done,
        repr(env.np_random.bit_generator.state),
    )


def assert_rejected(env: ConversationEnv, action: object, fragment: str = "") -> InvalidActionError:
    """`action` raises InvalidActionError (naming `fragment`) and changes nothing."""
    before = snapshot(env)
    with pytest.raises(InvalidActionError) as caught:
        env.step(action)  # type: ignore[arg-type]
    assert fragment in str(caught.value)
    assert snapshot(env) == before
    return caught.value


def shown(value: object) -> str:
    """How an error message names `value`: its repr and its type."""
    if isinstance(value, np.ndarray):
        return f"(ndarray of dtype {value.dtype}, shape {value.shape})"
    return f"({type(value).__name__})"


# ------------------------------------------------------------------------------- one attack per kind
@pytest.fixture(scope="module")
def world() -> ConversationEnv:
    return world_env()


@pytest.fixture
def fresh(world: ConversationEnv) -> ConversationEnv:
    world.reset(seed=0)
    return world


def valid_probe(env: ConversationEnv) -> dict[str, object]:
    return probe(1, env.state.reachable_aspects()[:2])


@pytest.mark.parametrize("value", BAD_SCALARS, ids=repr)
def test_kind_that_is_not_an_integer_raises(fresh: ConversationEnv, value: object) -> None:
    action = recommend([0, 1]) | {"kind": value}
    assert_rejected(fresh, action, "action['kind'] must be an integer")
    assert_rejected(fresh, action, shown(value))


@pytest.mark.parametrize("value", [3, -1, 2**40, np.int64(7), np.uint8(255)], ids=repr)
def test_kind_out_of_range_raises(fresh: ConversationEnv, value: object) -> None:
    assert_rejected(fresh, recommend([0, 1]) | {"kind": value}, f"action kind {int(value)} is not one of")


@pytest.mark.parametrize("value", BAD_LISTS, ids=repr)
@pytest.mark.parametrize("entry", ["aspects", "items"])
def test_id_list_that_is_not_flat_integers_raises(fresh: ConversationEnv, entry: str, value: object) -> None:
    # the entry is read (a probe reads aspects, a recommendation items) ...
    read = valid_probe(fresh) if entry == "aspects" else recommend([0, 1])
    error = assert_rejected(fresh, read | {entry: value}, f"action[{entry!r}] must be")
    if not isinstance(value, list | tuple):
        assert shown(value) in str(error)
    # ... and is rejected just the same where it is not read
    unread = recommend([0, 1]) if entry == "aspects" else valid_probe(fresh)
    assert_rejected(fresh, unread | {entry: value}, f"action[{entry!r}] must be")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [([1.9], "entry 0 is 1.9 (float)"), ([0, 2.0], "entry 1 is 2.0 (float)"), ([None], "entry 0 is None")],
)
def test_float_or_none_item_ids_are_named_and_not_coerced(
    fresh: ConversationEnv, value: list[object], fragment: str
) -> None:
    assert_rejected(fresh, recommend([0]) | {"items": value}, fragment)


@pytest.mark.parametrize("value", BAD_SCALARS, ids=repr)
def test_persona_that_is_not_an_integer_raises(fresh: ConversationEnv, value: object) -> None:
    assert_rejected(fresh, valid_probe(fresh) | {"persona": value}, "action['persona'] must be an integer")
    assert_rejected(fresh, recommend([0]) | {"persona": value}, "action['persona'] must be an integer")


@pytest.mark.parametrize("persona", [4, 5, 2**31, -1, np.int64(4)], ids=repr)
def test_persona_slot_outside_n_personas_raises_naming_the_range(
    fresh: ConversationEnv, persona: int
) -> None:
    # the world env has n_personas = 4 slots: 0..3
    assert fresh.n_personas == 4
    assert_rejected(
        fresh, valid_probe(fresh) | {"persona": persona}, f"probe persona {persona} outside [0, 4)"
    )
    fresh.step(valid_probe(fresh) | {"persona": 3})  # the last slot, 3, is carried out


@pytest.mark.parametrize("value", BAD_SCALARS, ids=repr)
def test_category_that_is_not_an_integer_raises(fresh: ConversationEnv, value: object) -> None:
    env = enumerated_env()
    env.reset(seed=0)
    assert_rejected(env, ask(0) | {"category": value}, "action['category'] must be an integer")
    # without enumerated questions the category is not read, but must still be an integer
    assert_rejected(fresh, recommend([0]) | {"category": value}, "action['category'] must be an integer")


@pytest.mark.parametrize("value", [np.int64(2), 1.0, True], ids=repr)
def test_aspect_scalar_instead_of_a_list_raises(fresh: ConversationEnv, value: object) -> None:
    assert_rejected(fresh, valid_probe(fresh) | {"aspects": value}, "must be a list, tuple or 1-D")


def test_too_many_ids_raise(fresh: ConversationEnv) -> None:
    # 5 choices per question, a slate of 10: six aspect entries or eleven item entries are too many,
    # even when they repeat one id
    assert_rejected(fresh, ask([0] * 6), "lists 6 entries but this env allows 5 per question")
    assert_rejected(fresh, recommend([0] * 11), "allows at most slate_size=10 items")
    assert_rejected(fresh, recommend([0]) | {"aspects": np.zeros(6, dtype=np.int64)}, "lists 6 entries")


@pytest.mark.parametrize("action", NOT_ACTIONS, ids=repr)
def test_non_dict_action_raises(fresh: ConversationEnv, action: object) -> None:
    assert_rejected(fresh, action, "action must be a dict")


def test_unknown_or_missing_entries_raise(fresh: ConversationEnv) -> None:
    assert_rejected(fresh, recommend([0]) | {"item": [1]}, "unknown action entry ['item']")
    assert_rejected(fresh, {0: 2, "items": [1]}, "unknown action entry [0]")
    assert_rejected(fresh, {"items": [1]}, "needs the action entry 'kind'")
    assert_rejected(fresh, {"kind": 2}, "recommend needs the action entry 'items'")
    assert_rejected(fresh, {"kind": 1, "aspects": [0]}, "probe needs the action entry 'persona'")
    assert_rejected(fresh, {"kind": 0, "items": []}, "ask needs the action entry 'aspects'")


@pytest.mark.parametrize(
    "call",
    [
        lambda: ask(2.7),
        lambda: ask([1.9]),
        lambda: ask("3"),
        lambda: ask(True),
        lambda: ask(np.array([1.0])),
        lambda: recommend([None]),
        lambda: recommend([[1, 2]]),
        lambda: recommend(np.array([[1, 2]])),
        lambda: recommend(2**70),
        lambda: probe(1.5, [1]),
        lambda: probe(None, [1]),
        lambda: probe(0, [float("nan")]),
    ],
)
def test_helpers_refuse_what_the_env_refuses(call: Callable[[], object]) -> None:
    with pytest.raises(InvalidActionError):
        call()


def test_accepted_forms_are_carried_out(world: ConversationEnv) -> None:
    """What the module docstring of envs.actions promises: python ints, numpy ints of any int dtype,
    0-d arrays, short and padded lists, tuples, repeats, and samples of the action space."""
    world.reset(seed=1)
    aspect, other = (int(a) for a in world.state.reachable_aspects()[:2])
    for dtype in INT_DTYPES:
        for action, asked, slate in (
            (ask(dtype(aspect)), (aspect,), ()),
            (ask(np.array([other, aspect], dtype=dtype)), (other, aspect), ()),
            ({"kind": dtype(1), "aspects": np.array([other, -1, other]), "persona": 0}, (other,), ()),
            ({"kind": np.array(2, dtype=dtype), "items": (np.int16(3), 3, -1)}, (), (3,)),
        ):
            world.reset(seed=1)
            world.step(action)
            assert world.state.history[-1].asked == asked and world.state.history[-1].slate == slate
    world.action_space.seed(0)
    for seed in range(50):
        world.reset(seed=seed)
        world.step(world.action_space.sample())
        world.reset(seed=seed)
        world.step({key: np.asarray(value).tolist() for key, value in world.action_space.sample().items()})


# ------------------------------------------------------------------------------------------- fuzzing
def entry_slots(env: ConversationEnv) -> dict[str, int]:
    return {"aspects": env.max_choices, "items": env.slate_size}


def int_form(rng: np.random.Generator, value: np.ndarray | np.integer | int) -> object:
    """`value` in a random accepted form: numpy int of some dtype, python int(s), list, tuple, padded."""
    array = np.asarray(value)
    dtypes = [d for d in INT_DTYPES if np.iinfo(d).min <= array.min() and array.max() <= np.iinfo(d).max]
    array = array.astype(dtypes[rng.integers(len(dtypes))])
    if array.ndim == 0:
        return [array, array[()], int(array)][rng.integers(3)]
    form = rng.integers(4)
    if form == 0:
        return array
    if form == 1:
        return array.tolist()
    if form == 2:
        return tuple(array.tolist())
    cut = int(rng.integers(1, array.size + 1))  # a short form, padded with -1 up to its slot count
    return [int(v) for v in array[:cut]] + [-1] * int(rng.integers(array.size - cut + 1))


def fuzz_action(rng: np.random.Generator, env: ConversationEnv, sample: dict[str, Any]) -> tuple[object, str]:
    """A random action built from a sample of the action space, and what must happen to it.

    Returns:
        (action, verdict): verdict "valid" (must be carried out) or "invalid" (must raise
        InvalidActionError; an out-of-range id too, in an entry the kind reads or not).
    """
    action: dict[object, object] = {key: int_form(rng, value) for key, value in sample.items()}
    roll = rng.random()
    if roll < 0.4:
        return action, "valid"
    scalars = [key for key in ("kind", "persona", "category") if key in action]
    lists = [key for key in ("aspects", "items") if key in action]
    if roll < 0.55:
        action[scalars[rng.integers(len(scalars))]] = BAD_SCALARS[rng.integers(len(BAD_SCALARS))]
        return action, "invalid"
    if roll < 0.7:
        action[lists[rng.integers(len(lists))]] = BAD_LISTS[rng.integers(len(BAD_LISTS))]
        return action, "invalid"
    if roll < 0.75:
        key = lists[rng.integers(len(lists))]
        action[key] = rng.integers(0, 3, size=entry_slots(env)[key] + int(rng.integers(1, 4))).tolist()
        return action, "invalid"
    if roll < 0.8:
        action["kind"] = [3, -1, 2**31, np.int8(-5)][rng.integers(4)]
        return action, "invalid"
    if roll < 0.85:
        choice = rng.integers(3)
        if choice == 0:
            action["unknown"] = 0
        elif choice == 1:
            del action["kind"]
        else:
            return NOT_ACTIONS[rng.integers(len(NOT_ACTIONS))], "invalid"
        return action, "invalid"
    # out-of-range ids: rejected whether the kind reads them or not (they lie outside the action space)
    size = {"aspects": env.catalog.n_aspects, "items": env.catalog.n_items, "persona": env.n_personas}
    size["category"] = env.n_categories
    key = list(size)[rng.integers(len(size))]
    if key not in action:
        return action, "valid"
    bad = [size[key], size[key] + 7, -2, -(2**63), 2**63 - 1][rng.integers(5)]
    if key in lists:
        ids = list(np.asarray(sample[key]).tolist())
        ids[rng.integers(len(ids))] = bad
        action[key] = ids
    else:
        action[key] = bad
    return action, "invalid"


def fuzz_env(env: gym.Env, rng: np.random.Generator, n_actions: int) -> dict[str, int]:
    """Send `n_actions` fuzz actions to `env`; count what happened by verdict."""
    base: ConversationEnv = env.unwrapped  # type: ignore[assignment]
    env.action_space.seed(int(rng.integers(2**31)))
    counts = {"valid": 0, "invalid": 0, "after-end": 0}
    obs, _ = env.reset(seed=int(rng.integers(2**31)))
    assert env.observation_space.contains(obs)
    for _ in range(n_actions):
        if base.done:
            if rng.random() < 0.05:  # a step after the end is refused too
                assert_rejected(base, env.action_space.sample(), "call reset()")
                counts["after-end"] += 1
                continue
            obs, _ = env.reset(seed=int(rng.integers(2**31)))
            assert env.observation_space.contains(obs)
        action, verdict = fuzz_action(rng, base, env.action_space.sample())
        before = snapshot(base)
        try:
            obs, reward, terminated, truncated, _ = env.step(action)
        except InvalidActionError:
            assert verdict != "valid", f"a valid action was refused: {action!r}"
            assert snapshot(base) == before, f"the state changed on the invalid action {action!r}"
            counts["invalid"] += 1
            continue
        assert verdict != "invalid", f"an invalid action was carried out: {action!r}"
        assert env.observation_space.contains(obs), f"observation left its space after {action!r}"
        assert isinstance(reward, float) and isinstance(terminated, bool) and isinstance(truncated, bool)
        counts["valid"] += 1
    return counts


def corrupt_batch(
    rng: np.random.Generator, batch: dict[str, np.ndarray], env: ConversationEnv, index: int
) -> dict[str, object]:
    """The vector action `batch` with env `index`'s entry replaced by a value outside the action space."""
    key = list(batch)[rng.integers(len(batch))]
    if key in ("aspects", "items"):
        pool = [*BAD_LISTS, [0] * (entry_slots(env)[key] + 1)]
    else:
        pool = [*BAD_SCALARS, 3 if key == "kind" else None]
    rows: list[object] = list(batch[key])
    rows[index] = pool[rng.integers(len(pool))]
    return {**batch, key: rows}


def stepping(rng: np.random.Generator, ended: np.ndarray) -> int | None:
    """A random env of the vector that steps next (not one Gymnasium autoresets instead), or None."""
    live = np.flatnonzero(~ended)
    return int(rng.choice(live)) if live.size else None


def fuzz_sync(make: Callable[[], gym.Env], rng: np.random.Generator, steps: int) -> int:
    """Random and corrupted vector actions through a SyncVectorEnv; returns the refused steps."""
    vector = gym.vector.SyncVectorEnv([make for _ in range(N_VECTOR_ENVS)])
    vector.action_space.seed(int(rng.integers(2**31)))
    obs, _ = vector.reset(seed=int(rng.integers(2**31)))
    ended = np.zeros(N_VECTOR_ENVS, dtype=bool)
    refused = 0
    for _ in range(steps):
        batch = vector.action_space.sample()
        index = stepping(rng, ended)
        if index is not None and rng.random() < 0.25:
            target: ConversationEnv = vector.envs[index].unwrapped  # type: ignore[assignment]
            action = corrupt_batch(rng, batch, target, index)
            before = snapshot(target)
            with pytest.raises(InvalidActionError):
                vector.step(action)
            assert snapshot(target) == before
            refused += 1
            # the envs before `index` have stepped: start the batch over
            obs, _ = vector.reset(seed=int(rng.integers(2**31)))
            ended[:] = False
        else:
            obs, _, terminated, truncated, _ = vector.step(batch)
            ended = terminated | truncated
        assert vector.observation_space.contains(obs)
    vector.close()
    return refused


def fuzz_async(make: Callable[[], gym.Env], rng: np.random.Generator, steps: int) -> int:
    """Random vector actions through an AsyncVectorEnv, with a corrupted one at ASYNC_BAD_STEPS."""
    single: ConversationEnv = make().unwrapped  # type: ignore[assignment]
    vector = gym.vector.AsyncVectorEnv([make for _ in range(N_VECTOR_ENVS)])
    refused = 0
    try:
        vector.action_space.seed(int(rng.integers(2**31)))
        obs, _ = vector.reset(seed=int(rng.integers(2**31)))
        ended = np.zeros(N_VECTOR_ENVS, dtype=bool)
        for step in range(steps):
            batch = vector.action_space.sample()
            index = stepping(rng, ended)
            if step in ASYNC_BAD_STEPS and index is not None:
                with pytest.raises(InvalidActionError):
                    vector.step(corrupt_batch(rng, batch, single, index))
                refused += 1
                # Gymnasium shuts down a worker that raised: start a new vector env
                vector.close(terminate=True)
                vector = gym.vector.AsyncVectorEnv([make for _ in range(N_VECTOR_ENVS)])
                vector.action_space.seed(int(rng.integers(2**31)))
                obs, _ = vector.reset(seed=int(rng.integers(2**31)))
                ended[:] = False
            else:
                obs, _, terminated, truncated, _ = vector.step(batch)
                ended = terminated | truncated
            assert vector.observation_space.contains(obs)
    finally:
        vector.close(terminate=True)
    return refused


def real_param(env_id: str) -> Any:
    kwargs = REGISTERED[env_id]
    marks = [] if kwargs["dataset"] == "persona_world" else [pytest.mark.real_data, pytest.mark.slow]
    return pytest.param(env_id, marks=marks, id=env_id)


def builder(env_id: str, request: pytest.FixtureRequest) -> Callable[[], gym.Env]:
    """A builder of the registered env `env_id` (real data: ../shared/data, see tests/conftest.py).

    Real catalogues load once per process (`load_catalog` caches them), so later builds, and the
    forked workers of AsyncVectorEnv, reuse the first load.
    """
    if REGISTERED[env_id]["dataset"] == "persona_world":
        return lambda: gym.make(env_id)
    data_dir: Path = request.getfixturevalue("real_data_dir")
    return lambda: gym.make(env_id, data_dir=data_dir)


def test_fuzz_sends_20000_actions() -> None:
    assert FUZZ_TOTAL >= 20_000


@pytest.mark.parametrize("env_id", [real_param(env_id) for env_id in REGISTERED])
def test_fuzz_registered_env(env_id: str, request: pytest.FixtureRequest) -> None:
    make = builder(env_id, request)
    rng = np.random.default_rng(list(REGISTERED).index(env_id))
    counts = fuzz_env(make(), rng, SINGLE_ACTIONS)
    assert sum(counts.values()) == SINGLE_ACTIONS
    # the mix really attacks: about 40% valid, 45% invalid, 15% out-of-range ids
    assert counts["valid"] > SINGLE_ACTIONS // 4 and counts["invalid"] > SINGLE_ACTIONS // 3
    assert fuzz_sync(make, rng, SYNC_STEPS) > SYNC_STEPS // 8


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning:gymnasium.vector.async_vector_env")  # the worker's traceback
@pytest.mark.parametrize("env_id", [real_param(env_id) for env_id in REGISTERED])
def test_fuzz_registered_env_async(env_id: str, request: pytest.FixtureRequest) -> None:
    make = builder(env_id, request)
    rng = np.random.default_rng(100 + list(REGISTERED).index(env_id))
    assert fuzz_async(make, rng, ASYNC_STEPS) == len(ASYNC_BAD_STEPS)
