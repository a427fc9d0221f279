"""The structured action of a conversation turn: ask, probe a persona, or recommend a slate.

An action is a dict with up to five entries (the env's Dict action space):

- ``kind``: 0 = ask, 1 = probe, 2 = recommend.
- ``aspects``: aspect ids of a question, shape (max_choices,). One distinct id = a binary question,
  several = multiple choice.
- ``category``: the first-layer category of an enumerated question (Yelp*-style envs only).
- ``persona``: the persona slot a probe targets (kept for explanations; ignored otherwise).
- ``items``: the slate, shape (slate_size,).

Id lists may be shorter than their slot count, padded with -1, or repeat ids: repeats count once, in
order of first appearance. So every sample of the action space is a valid action, and the helpers
`ask`, `probe` and `recommend` build the short form.

Ids are integers and are never coerced: a scalar entry is a python ``int`` or a numpy integer (any
integer dtype, 0-d arrays included); an id list is a list or tuple of those, or a 1-D numpy array of
an integer dtype. Floats (even 3.0), bools, None, strings, NaN, values outside int64, nested lists
and arrays of another shape raise `InvalidActionError`, whose message names the bad value. An entry
the kind does not read (``items`` of an ask, ``category`` in an env without enumerated questions)
may be left out; if present it must still be well-typed and lie in the action space, with -1 for
"unused" (the helpers fill it with -1): an id outside it raises `InvalidActionError` like one the kind
reads. In an env without enumerated questions ``category`` is not range-checked (the space has none).
"""

from __future__ import annotations

import functools
import reprlib
from collections.abc import Iterable, Mapping
from copy import deepcopy
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import batch_space

from simulators.errors import CRSError


class ActionKind(IntEnum):
    ASK = 0
    PROBE = 1
    RECOMMEND = 2


class InvalidActionError(CRSError, ValueError):
    """An action the env cannot carry out; the dialogue state is left unchanged."""


@dataclass(frozen=True)
class ParsedAction:
    """An action after validation: ids de-duplicated, padding removed.

    Attributes:
        kind: Ask, probe or recommend.
        aspects: Question ids asked (empty for a recommendation).
        persona: Persona slot of a probe, else None.
        items: The slate (empty for a question).
    """

    kind: ActionKind
    aspects: tuple[int, ...] = ()
    persona: int | None = None
    items: tuple[int, ...] = ()


PAD = -1
ACTION_KEYS: tuple[str, ...] = ("kind", "aspects", "category", "persona", "items")
KIND_EXPECTED = "one of 0=ask, 1=probe, 2=recommend"
KIND_VALUES = frozenset(int(kind) for kind in ActionKind)
BINARY_HINT = " (binary setting allows 1; create the env with setting='multiple_choice' for more)"
ENUMERATED_HINT = " (the enumerated setting asks one category per question, in the category entry)"
_INT64_MIN, _INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)
_SHOW = reprlib.Repr()
_SHOW.maxstring = _SHOW.maxother = 60
_SHOW.maxlist = _SHOW.maxtuple = 8


def show_value(value: object) -> str:
    """A short repr of `value` and its type, for error messages."""
    if isinstance(value, np.ndarray):
        text = np.array2string(value, threshold=8, edgeitems=3)
        return f"{text} (ndarray of dtype {value.dtype}, shape {value.shape})"
    return f"{_SHOW.repr(value)} ({type(value).__name__})"


def _as_int(value: object) -> int | None:
    """`value` as a python int if it is an integer within int64, else None (never coerced).

    Integers are python ints and numpy integers of any int or uint dtype (0-d arrays included).
    Bools, floats (even integer-valued ones), strings, None and everything else give None.
    """
    if isinstance(value, np.ndarray | np.generic):
        if value.shape != () or value.dtype.kind not in "iu":
            return None
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = int(value)
    else:
        return None
    return number if _INT64_MIN <= number <= _INT64_MAX else None


def _scalar(name: str, value: object, expected: str) -> int:
    """The integer of a scalar entry (``kind``, ``category``, ``persona``)."""
    number = _as_int(value)
    if number is None:
        raise InvalidActionError(
            f"action[{name!r}] must be an integer (python int or numpy integer within int64; never a "
            f"float, bool or None): expected {expected}, got {show_value(value)}"
        )
    return number


def _id_list(name: str, value: object, expected: str) -> list[int]:
    """The integers of an id-list entry (``aspects``, ``items``): a flat list, tuple or 1-D int array."""
    problem = ""
    numbers: list[int] = []
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            problem = f"a 1-D array, not one of shape {value.shape}"
        elif value.dtype.kind not in "iu":
            problem = f"an integer array, not one of dtype {value.dtype}"
        else:
            numbers = value.tolist()
            if value.dtype.kind == "u" and numbers and max(numbers) > _INT64_MAX:
                problem = "an array of ids within int64"
    elif isinstance(value, list | tuple) and all(type(element) is int for element in value):
        numbers = list(value)  # plain ints (a bool's type is bool): the common, fast case
        if numbers and not (min(numbers) >= _INT64_MIN and max(numbers) <= _INT64_MAX):
            problem = "a flat list of integers within int64"
    elif isinstance(value, list | tuple):
        for position, element in enumerate(value):
            number = _as_int(element)
            if number is None:
                problem = (
                    f"a flat list of integers within int64, but entry {position} is {show_value(element)}"
                )
                break
            numbers.append(number)
    else:
        problem = "a list, tuple or 1-D integer numpy array"
    if problem:
        raise InvalidActionError(
            f"action[{name!r}] must be {problem}: expected {expected}, padded with -1; "
            f"got {show_value(value)}"
        )
    return numbers


def _unique(values: Iterable[int]) -> tuple[int, ...]:
    """`values` without padding, each id once, in order of first appearance."""
    seen: dict[int, None] = {}
    for value in values:
        if value != PAD:
            seen.setdefault(value, None)
    return tuple(seen)


def _ids(values: Iterable[int] | int, name: str) -> list[int]:
    """Helper input as python ints: one integer, or an iterable (list, tuple, 1-D array, range) of them."""
    number = _as_int(values)
    if number is not None:
        return [number]
    expected = f"integer {name} ids"
    if isinstance(values, np.ndarray | list | tuple):
        return _id_list(name, values, expected)
    if isinstance(values, Iterable) and not isinstance(values, str | bytes | Mapping):
        return _id_list(name, list(values), expected)
    raise InvalidActionError(
        f"{name} must be an integer id or an iterable of integer ids, got {show_value(values)}"
    )


def ask(aspects: Iterable[int] | int) -> dict[str, object]:
    """An ask action: one aspect id (binary question), several (multiple choice), or for an env with
    enumerated questions one category id.

    Raises:
        InvalidActionError: an id is not an integer.
    """
    ids = _ids(aspects, "aspects")
    return {
        "kind": int(ActionKind.ASK),
        "aspects": ids,
        "category": ids[0] if ids else PAD,
        "persona": 0,
        "items": [],
    }


def probe(persona: int, aspects: Iterable[int] | int) -> dict[str, object]:
    """A probe of persona slot `persona`: one multiple-choice question listing `aspects`.

    Raises:
        InvalidActionError: the persona or an id is not an integer.
    """
    return {
        "kind": int(ActionKind.PROBE),
        "aspects": _ids(aspects, "aspects"),
        "category": PAD,
        "persona": _scalar("persona", persona, "a persona slot"),
        "items": [],
    }


def recommend(items: Iterable[int]) -> dict[str, object]:
    """A recommendation of the slate `items` (best first).

    Raises:
        InvalidActionError: an id is not an integer.
    """
    return {
        "kind": int(ActionKind.RECOMMEND),
        "aspects": [],
        "category": PAD,
        "persona": 0,
        "items": _ids(items, "items"),
    }


def _require(action: Mapping[object, object], name: str, word: str, expected: str) -> object:
    if name not in action:
        raise InvalidActionError(
            f"{word} needs the action entry {name!r} ({expected}); "
            "build actions with envs.ask/probe/recommend"
        )
    return action[name]


@functools.lru_cache(maxsize=64)
def _expectations(
    n_aspects: int,
    n_categories: int,
    n_items: int,
    n_personas: int,
    max_choices: int,
    slate_size: int,
    probes: bool,
) -> tuple[str, str, str, str, str]:
    """The "expected ..." phrases of an env's error messages (built once per env shape, not per step),
    the last one the hint after "allows 1 per question": the binary setting's (no categories, no probes)
    points to the multiple-choice setting, the enumerated setting's to the category entry, and a
    multiple-choice env made with one choice gets none."""
    if n_categories:
        one_choice_hint = ENUMERATED_HINT
    else:
        one_choice_hint = BINARY_HINT if max_choices == 1 and not probes else ""
    return (
        f"up to {max_choices} aspect id(s) in [0, {n_aspects})",
        f"up to slate_size={slate_size} item ids in [0, {n_items})",
        f"a category id in [0, {n_categories})" if n_categories else "an integer (not read by this env)",
        f"a persona slot in [0, {n_personas})",
        one_choice_hint,
    )


def parse_action(
    action: object,
    *,
    n_aspects: int,
    n_categories: int,
    n_items: int,
    n_personas: int,
    max_choices: int,
    slate_size: int,
    probes: bool = True,
) -> ParsedAction:
    """Validate a raw action (dict from a helper or sampled from the action space).

    Padding (-1) is dropped and repeated ids are kept once, in order of first appearance. With
    `n_categories` > 0 (enumerated questions) an ask reads the ``category`` entry; its ParsedAction
    carries the category id in `aspects`. With `probes` False (a setting without persona probes,
    `envs.setting.offers_probes`) a probe is refused. Nothing is coerced (see the module docstring).

    Raises:
        InvalidActionError: not a dict, unknown entry, an entry that is not an integer (or a flat
            list of them) of the right size, unknown kind, id out of range, empty question or slate,
            too many ids, a probe where `probes` is False. The message names the bad value and what
            is expected.
    """
    if not isinstance(action, Mapping):
        raise InvalidActionError(
            f"action must be a dict with entries {', '.join(ACTION_KEYS)} (use envs.ask/probe/recommend), "
            f"got {show_value(action)}"
        )
    unknown = [key for key in action if key not in ACTION_KEYS]
    if unknown:
        raise InvalidActionError(
            f"unknown action entr{'y' if len(unknown) == 1 else 'ies'} {unknown!r}; an action has the "
            f"entries {', '.join(ACTION_KEYS)}"
        )
    aspects_expected, items_expected, category_expected, persona_expected, one_choice_hint = _expectations(
        n_aspects, n_categories, n_items, n_personas, max_choices, slate_size, probes
    )
    kind_value = _scalar("kind", _require(action, "kind", "an action", KIND_EXPECTED), KIND_EXPECTED)
    if kind_value not in KIND_VALUES:
        raise InvalidActionError(f"action kind {kind_value!r} is not {KIND_EXPECTED}")
    kind = ActionKind(kind_value)
    if kind is ActionKind.PROBE and not probes:
        raise InvalidActionError(
            f"action kind {kind_value} (probe) is not offered here: only the multiple-choice setting "
            "offers persona probes; use kind 0 (ask) or 2 (recommend), or create the env with "
            "setting='multiple_choice'"
        )
    # every entry present is type- and size-checked, even one this kind does not read
    lists: dict[str, list[int]] = {}
    for name, slots, expected, limit in (
        ("aspects", max_choices, aspects_expected, f"{max_choices} per question{one_choice_hint}"),
        ("items", slate_size, items_expected, f"at most slate_size={slate_size} items in a slate"),
    ):
        if name in action:
            lists[name] = _id_list(name, action[name], expected)
            if len(lists[name]) > slots:
                raise InvalidActionError(
                    f"action[{name!r}] lists {len(lists[name])} entries but this env allows {limit}"
                )
    scalars = {
        name: _scalar(name, action[name], expected)
        for name, expected in (("category", category_expected), ("persona", persona_expected))
        if name in action
    }
    # an entry this kind does not read must still lie in the action space (-1 stands for "unused")
    if kind is ActionKind.RECOMMEND:
        reads = {"items"}
    elif kind is ActionKind.PROBE:
        reads = {"aspects", "persona"}
    else:
        reads = {"category"} if n_categories else {"aspects"}
    sizes = {"aspects": n_aspects, "items": n_items, "persona": n_personas, "category": n_categories}
    present = {**lists, **{name: [value] for name, value in scalars.items()}}
    for name, numbers in present.items():
        if name in reads or not sizes[name]:  # a read entry's ids are checked below, with its own words
            continue
        bad = [number for number in numbers if not PAD <= number < sizes[name]]
        if bad:
            raise InvalidActionError(
                f"action[{name!r}] holds {bad}, outside [0, {sizes[name]}) (-1: unused); kind {kind_value} "
                "does not read it, but every entry must lie in the action space"
            )

    if kind is ActionKind.RECOMMEND:
        _require(action, "items", "recommend", items_expected)
        items = _unique(lists["items"])
        if not items:
            padding = " but -1, which pads the list" if lists["items"] else ""
            raise InvalidActionError(f"recommend needs a non-empty slate of item ids (got none{padding})")
        bad = [i for i in items if not 0 <= i < n_items]
        if bad:
            raise InvalidActionError(f"unknown item id(s) {bad}; item ids lie in [0, {n_items})")
        return ParsedAction(kind=kind, items=items)
    word = "ask" if kind is ActionKind.ASK else "probe"
    if kind is ActionKind.ASK and n_categories:
        _require(action, "category", "ask", category_expected)
        category = scalars["category"]
        if not 0 <= category < n_categories:
            raise InvalidActionError(
                f"this env asks enumerated questions: ask needs a category id in [0, {n_categories}), "
                f"got {category}"
            )
        return ParsedAction(kind=kind, aspects=(category,))
    _require(action, "aspects", word, aspects_expected)
    aspects = _unique(lists["aspects"])
    if not aspects:
        padding = " but -1, which pads the list" if lists["aspects"] else ""
        raise InvalidActionError(f"{word} needs at least one aspect id (got none{padding})")
    bad = [a for a in aspects if not 0 <= a < n_aspects]
    if bad:
        raise InvalidActionError(f"unknown aspect id(s) {bad}; aspect ids lie in [0, {n_aspects})")
    persona = None
    if kind is ActionKind.PROBE:
        _require(action, "persona", "probe", persona_expected)
        persona = scalars["persona"]
        if not 0 <= persona < n_personas:
            raise InvalidActionError(f"probe persona {persona} outside [0, {n_personas})")
    return ParsedAction(kind=kind, aspects=aspects, persona=persona)


class NoProbeSpace(spaces.Dict):
    """The env's Dict action space in a setting without persona probes (binary, enumerated).

    ``kind`` stays ``Discrete(3)`` (0 = ask, 1 = probe, 2 = recommend, as in every setting), but a
    sample never probes: a plain sample is drawn, then each probe kind is redrawn uniformly between ask
    and recommend, so every sample is a valid action. `contains` is False for a probe. The batched
    space of a vector env (``gymnasium.vector.utils.batch_space``) is a `NoProbeSpace` too, redrawing
    row by row. With a `mask` or `probability` the plain sample is returned as drawn.

    Args:
        subspaces: The entries of the env's action Dict (or of its batched form).
        seed: Seed of the space's generators (as `gymnasium.spaces.Dict`).
    """

    def __init__(
        self, subspaces: dict[str, spaces.Space[Any]], seed: int | np.random.Generator | None = None
    ) -> None:
        super().__init__(subspaces, seed=seed)

    def sample(
        self, mask: dict[str, Any] | None = None, probability: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        action = super().sample(mask=mask, probability=probability)
        if mask is None and probability is None:
            kinds = np.asarray(action["kind"])  # 0-d for one env, (n,) for a vector env
            probing = kinds == int(ActionKind.PROBE)
            if probing.any():
                other = self.np_random.choice(
                    [int(ActionKind.ASK), int(ActionKind.RECOMMEND)], size=kinds.shape
                )
                action["kind"] = np.where(probing, other, kinds).astype(kinds.dtype)[()]
        return action

    def contains(self, x: Any) -> bool:
        if not super().contains(x):
            return False
        return not bool(np.any(np.asarray(x["kind"]) == int(ActionKind.PROBE)))


@batch_space.register(NoProbeSpace)
def _batch_no_probe_space(space: NoProbeSpace, n: int = 1) -> NoProbeSpace:
    """The action space of `n` vector envs: without probes like one env's (Gymnasium's Dict rule)."""
    return NoProbeSpace(
        {key: batch_space(subspace, n=n) for key, subspace in space.items()}, seed=deepcopy(space.np_random)
    )
