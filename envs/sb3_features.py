"""The SB3 wrapper's hand features: their names, their columns, and how each one is scaled.

Each feature block of the observation (``question_feats`` (Q, 6), ``probe_feats`` (P, 4),
``item_feats`` (N, 5), ``global`` (14,)) is a float32 array whose last axis holds the features named
in `FEATURE_NAMES` for that key, in that order. Builders never index a column by number: they call
``write(block, key, name, value)``.

What each feature means and how it is scaled (n_c = candidate items, T = the env's turn limit,
k = slate size, N = item slots, M = probe size; "weights" = softmax of the z-scored ranker scores
over the candidates):

- question (an aspect, or a category in enumerated envs): ``score_z`` its ranker score z-scored over
  the reachable ones; ``share_weighted`` / ``share`` the weight / fraction of candidates holding it;
  ``entropy_weighted`` the binary entropy (bits) of ``share_weighted``; ``ranker_pick`` 1 when the
  slot was filled by ranker score rather than by entropy; ``log_count`` log1p(holders) / log1p(n_c).
- probe (persona k): ``posterior`` the ranker's belief in persona k; ``share_weighted`` / ``share``
  the weight / fraction of candidates holding any listed aspect; ``n_aspects`` listed aspects / M.
- item (best first): ``score_z``; ``rank`` slot index / N; ``prob`` its weight; ``rejected_aspects``
  rejected aspects it holds / `REJECTED_ASPECTS_SCALE`; ``cum_prob`` the weight of the slots up to it.
- global: ``turn`` / ``turns_left`` turns elapsed / left over T; ``log_candidates``
  log1p(n_c) / log1p(catalogue items); ``few_candidates`` 1 when n_c <= k; ``answer_*`` one-hot of
  the user's last answer (`ANSWER_FEATURES`); ``n_accepted`` / ``n_rejected`` aspects over
  `FACT_COUNT_SCALE`; ``n_rejected_items`` over k·T (a full slate rejected every turn);
  ``topk_mass`` the weight of the first k item slots; ``top1_prob`` the first slot's weight;
  ``score_entropy`` the weights' entropy over log(max(n_c, 2)) (1 = uniform).
- plan (only with ``WrapperConfig.plan_depth``, appended after the block's own columns; binary setting):
  a depth-limited search of the yes/no answers under the ranker's belief (`envs.answer_search`)
  values each choice by the belief's mass on the targets it would find. Question ``plan_gain``: the
  mass found by asking the slot's aspect now, minus the mass found by recommending from here on;
  ``plan_pick`` 1 on the slot the search would ask (the best gain, when asking wins; the choice of
  ``lookahead-DxQ`` over these slots). Global ``plan_recommend``: the mass found by recommending from
  here on. All 0 at the last turn or when one slate shows every candidate.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from envs.env import ANSWER_ACCEPTED, ANSWER_NONE, ANSWER_REJECTED, ANSWER_SLATE_REJECTED

QUESTION_FEATURES = ("score_z", "share_weighted", "share", "entropy_weighted", "ranker_pick", "log_count")
PROBE_FEATURES = ("posterior", "share_weighted", "share", "n_aspects")
ITEM_FEATURES = ("score_z", "rank", "prob", "rejected_aspects", "cum_prob")
GLOBAL_FEATURES = (
    "turn",
    "turns_left",
    "log_candidates",
    "few_candidates",
    "answer_none",
    "answer_accepted",
    "answer_rejected",
    "answer_slate_rejected",
    "n_accepted",
    "n_rejected",
    "n_rejected_items",
    "topk_mass",
    "top1_prob",
    "score_entropy",
)
# hand features computed from the ranker's scores or posterior (zeroed without ranker features)
RANKER_DERIVED = {
    "question_feats": ("score_z", "share_weighted", "entropy_weighted", "ranker_pick"),
    "probe_feats": ("posterior", "share_weighted"),
    "item_feats": ("score_z", "rank", "prob", "cum_prob"),
    "global": ("topk_mass", "top1_prob", "score_entropy"),
}
# the search's features, appended to these blocks with ``WrapperConfig.plan_depth`` (see above)
PLAN_FEATURES = {"question_feats": ("plan_gain", "plan_pick"), "global": ("plan_recommend",)}
FEATURE_NAMES = {
    "question_feats": QUESTION_FEATURES,
    "probe_feats": PROBE_FEATURES,
    "item_feats": ITEM_FEATURES,
    "global": GLOBAL_FEATURES,
}
# the global feature set to 1 for each `DialogueState.last_answer` code
ANSWER_FEATURES = {
    ANSWER_NONE: "answer_none",
    ANSWER_ACCEPTED: "answer_accepted",
    ANSWER_REJECTED: "answer_rejected",
    ANSWER_SLATE_REJECTED: "answer_slate_rejected",
}

# Scales, not bounds (larger counts give values above 1). Aspect counts are in units of 8: on the persona
# world and LastFM* the accepted and rejected aspects of most turns number 8 or fewer (Yelp*'s category
# answers reject far more).
FACT_COUNT_SCALE = 8.0
# An item slot's rejected aspects are in units of 4: most items hold no rejected aspect, few more than 4.
REJECTED_ASPECTS_SCALE = 4.0

COLUMNS = {key: {name: index for index, name in enumerate(names)} for key, names in FEATURE_NAMES.items()}


def column(key: str, name: str) -> int:
    """The column of feature `name` in the block `key` (a `FEATURE_NAMES` key).

    Raises:
        KeyError: `key` is not a feature block, or `name` is not one of its features.
    """
    try:
        return COLUMNS[key][name]
    except KeyError:
        raise KeyError(f"{key} has no feature {name!r}; feature blocks: {FEATURE_NAMES}") from None


def write(block: np.ndarray, key: str, name: str, value: ArrayLike) -> None:
    """Set feature `name` of the block `key` in place: ``block[..., column(key, name)] = value``.

    Args:
        block: A feature block or rows of one (a view), float32 of shape (..., len(FEATURE_NAMES[key])).
        key: The block's observation key ("question_feats", "probe_feats", "item_feats" or "global").
        name: The feature's name.
        value: A scalar, or one value per row, shape broadcastable to block.shape[:-1].
    """
    block[..., column(key, name)] = value


def hide_ranker_derived(obs: dict[str, np.ndarray]) -> None:
    """Zero, in place, the `RANKER_DERIVED` columns of the feature blocks `obs` has."""
    for key, names in RANKER_DERIVED.items():
        if key in obs:
            obs[key][..., [column(key, name) for name in names]] = 0.0
