"""Typed multiple-choice questions (MCMIPL): the values one question lists share one attribute type.

MCMIPL's env (``MultiChoiceRecommendEnv``, see docs/protocols/mcmipl.md section 4) asks a question over
one *question type* (an attribute's first listed type, untyped attributes together in an extra type)
and lists up to ``choice_num`` values of it. This module holds that rule once:

- `QuestionTypes`: the question type of every aspect, with names for messages;
- `check_one_type`: the env's refusal of an ask that mixes types;
- `typed_question`: the values a policy asks when it picks one aspect: that aspect, then the best-scored
  askable values of its type (rule baselines and the SB3 wrapper both use it);
- `TypedQuestionSpace`: the env's action space, whose samples are valid asks (one type each).
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import batch_space

from envs.actions import ActionKind, InvalidActionError
from simulators.errors import CRSError
from simulators.frozen import ReadOnlyWhenUnpickled, read_only_array
from simulators.mcmipl import AttributeTypes


@dataclass(frozen=True)
class QuestionTypes(ReadOnlyWhenUnpickled):
    """The type each aspect is asked under.

    Attributes:
        of_aspect: Question type of each aspect, int64 of shape (n_aspects,), values in [0, n_types).
        names: Name of each question type, length n_types.
    """

    of_aspect: np.ndarray
    names: tuple[str, ...]
    # the aspects sorted by type, then id; type t's are _by_type[_starts[t]:_starts[t + 1]]
    _by_type: np.ndarray = field(init=False, repr=False, compare=False)
    _starts: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        of_aspect = read_only_array(self.of_aspect, np.int64)
        object.__setattr__(self, "of_aspect", of_aspect)
        object.__setattr__(self, "names", tuple(self.names))
        n_types = len(self.names)
        if of_aspect.ndim != 1 or (of_aspect.size and (of_aspect.min() < 0 or of_aspect.max() >= n_types)):
            raise CRSError(
                f"QuestionTypes.of_aspect must be 1-D with values in [0, {n_types}) (one name per "
                f"type); got shape {of_aspect.shape}"
                + (f", values {of_aspect.min()}..{of_aspect.max()}" if of_aspect.size else "")
            )
        by_type = np.argsort(of_aspect, kind="stable")
        starts = np.searchsorted(of_aspect[by_type], np.arange(n_types + 1))
        object.__setattr__(self, "_by_type", read_only_array(by_type, np.int64))
        object.__setattr__(self, "_starts", read_only_array(starts, np.int64))

    @classmethod
    def from_attribute_types(cls, types: AttributeTypes) -> QuestionTypes:
        """MCMIPL's question types of a release: `AttributeTypes.question_type`, the untyped attributes
        in the extra type ``n_types`` named "other" (MCMIPL's ``other_feature``)."""
        return cls(of_aspect=types.question_type, names=(*types.names, "other"))

    @property
    def n_aspects(self) -> int:
        return int(self.of_aspect.size)

    def members(self, question_type: int) -> np.ndarray:
        """Aspects of `question_type`, ascending, int64 of shape (n,)."""
        members: np.ndarray = self._by_type[self._starts[question_type] : self._starts[question_type + 1]]
        return members

    def describe(self, aspect: int) -> str:
        """The aspect and its type for messages, e.g. "aspect 17 (type 3 'rock')"."""
        question_type = int(self.of_aspect[aspect])
        return f"aspect {aspect} (type {question_type} {self.names[question_type]!r})"


def check_one_type(aspects: tuple[int, ...], types: QuestionTypes) -> None:
    """Refuse a question listing aspects of more than one question type.

    Args:
        aspects: The asked aspect ids (in range), shape (m,).
        types: The env's question types.

    Raises:
        InvalidActionError: The aspects have different question types; the message names each
            aspect's type and the fix.
    """
    kinds = {int(types.of_aspect[a]) for a in aspects}
    if len(kinds) > 1:
        listed = ", ".join(types.describe(a) for a in aspects)
        raise InvalidActionError(
            f"ask lists aspects of {len(kinds)} question types: {listed}; in MCMIPL's multiple-choice "
            "setting a question lists values of one type: ask aspects of one type (envs.question_types."
            "typed_question builds one), or use a probe for a question over several types"
        )


def typed_question(
    aspect: int, pool: np.ndarray, scores: np.ndarray, types: QuestionTypes, max_choices: int
) -> tuple[int, ...]:
    """The values of a question about `aspect`: `aspect` first, then the best-scored aspects of `pool` of
    the same question type, up to `max_choices` values in all (ties: lower id first).

    Args:
        aspect: The aspect the policy chose.
        pool: The aspects that may be listed (e.g. the reachable ones), int64 of shape (n,).
        scores: The policy's score of each `pool` aspect (higher first), float of shape (n,).
        types: The env's question types.
        max_choices: The env's values per question.

    Returns:
        The aspect ids to ask, `aspect` first, length in [1, max_choices].
    """
    pool = np.asarray(pool, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if pool.shape != scores.shape:
        raise CRSError(f"typed_question: pool {pool.shape} and scores {scores.shape} must have one shape")
    same = (types.of_aspect[pool] == types.of_aspect[aspect]) & (pool != aspect)
    peers, peer_scores = pool[same], scores[same]
    best = peers[np.lexsort((peers, -peer_scores))][: max(max_choices - 1, 0)]
    return (int(aspect), *(int(a) for a in best))


class TypedQuestionSpace(spaces.Dict):
    """The env's Dict action space when questions are typed: a sampled ask lists aspects of one type.

    A plain sample is drawn, then the ``aspects`` of an ask after the first are redrawn uniformly among
    the aspects of the first one's type, so every sample is a valid action (as in untyped envs). The
    batched space of a vector env (``gymnasium.vector.utils.batch_space``) is a `TypedQuestionSpace`
    too, redrawing row by row. With a `mask` or `probability` the plain sample is returned as drawn.

    Args:
        subspaces: The entries of the env's action Dict (or of its batched form).
        types: The env's question types.
        seed: Seed of the space's generators (as `gymnasium.spaces.Dict`).
    """

    def __init__(
        self,
        subspaces: dict[str, spaces.Space[Any]],
        types: QuestionTypes,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__(subspaces, seed=seed)
        self.types = types

    def sample(
        self, mask: dict[str, Any] | None = None, probability: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        action = super().sample(mask=mask, probability=probability)
        if mask is None and probability is None:
            kinds = np.atleast_1d(np.asarray(action["kind"]))  # (n,): 1 row, or one per vector env
            rows = np.atleast_2d(action["aspects"])  # (n, max_choices), a view written in place
            for row in np.flatnonzero(kinds == int(ActionKind.ASK)):
                peers = self.types.members(int(self.types.of_aspect[rows[row, 0]]))
                rows[row, 1:] = self.np_random.choice(peers, size=rows.shape[1] - 1)
        return action

    def contains(self, x: Any) -> bool:
        """Whether `x` is in the Dict space and every ask in it lists aspects of one type (the env
        refuses any other ask, `check_one_type`)."""
        if not super().contains(x):
            return False
        kinds = np.atleast_1d(np.asarray(x["kind"]))  # (n,): 1 row, or one per vector env
        rows = np.atleast_2d(np.asarray(x["aspects"]))  # (n, max_choices)
        asks = rows[kinds == int(ActionKind.ASK)]
        return all(np.unique(self.types.of_aspect[row]).size == 1 for row in asks)


@batch_space.register(TypedQuestionSpace)
def _batch_typed_space(space: TypedQuestionSpace, n: int = 1) -> TypedQuestionSpace:
    """The action space of `n` vector envs: typed like one env's (Gymnasium's Dict rule, then typed)."""
    return TypedQuestionSpace(
        {key: batch_space(subspace, n=n) for key, subspace in space.items()},
        space.types,
        seed=deepcopy(space.np_random),
    )
