"""The slate distribution: exact Plackett–Luce log-probabilities, masks, and Gumbel-top-k sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from policies.rl.distribution import SlateDistribution


def dist_with(choice: list[float], items: list[float], k: int) -> SlateDistribution:
    dist = SlateDistribution(n_choices=len(choice), n_items=len(items), slate_size=k)
    return dist.proba_distribution(torch.tensor([choice + items], dtype=torch.float32))


def lse(values: list[float]) -> float:
    return math.log(sum(math.exp(v) for v in values))


def test_log_prob_is_choice_plus_plackett_luce() -> None:
    choice, items = [0.5, -0.2, 1.0], [0.3, -1.0, 2.0, 0.0]
    dist = dist_with(choice, items, k=2)
    # recommend (last choice) with slate (2, 0):
    # log p(rec) + [l2 - lse(l0..l3)] + [l0 - lse(l0, l1, l3)]
    expected = (
        (choice[2] - lse(choice)) + (items[2] - lse(items)) + (items[0] - lse([items[0], items[1], items[3]]))
    )
    got = dist.log_prob(torch.tensor([[2, 2, 0]]))
    assert got.item() == pytest.approx(expected, abs=1e-5)
    # a question (choice 0) ignores the slots: log p(choice 0) only
    got = dist.log_prob(torch.tensor([[0, 2, 0]]))
    assert got.item() == pytest.approx(choice[0] - lse(choice), abs=1e-5)


def test_masks_apply_from_numpy_bools_and_float_tensors_alike() -> None:
    choice, items = [0.0, 0.0, 0.0], [0.3, -1.0, 2.0, 0.0]
    k = 2
    # choice 1 masked; item 2 masked; the mask repeats the item mask k times (sb3-contrib layout)
    mask = np.array([[True, False, True] + [True, True, False, True] * k])
    a = dist_with(choice, items, k)
    a.apply_masking(mask)
    b = dist_with(choice, items, k)
    b.apply_masking(torch.as_tensor(mask, dtype=torch.float32))
    action = torch.tensor([[2, 0, 3]])
    # log p(rec) = log 1/2 (two valid choices, equal logits); slate (0, 3) among {0, 1, 3}
    expected = (
        math.log(0.5)
        + (items[0] - lse([items[0], items[1], items[3]]))
        + (items[3] - lse([items[1], items[3]]))
    )
    assert a.log_prob(action).item() == pytest.approx(expected, abs=1e-5)
    assert b.log_prob(action).item() == pytest.approx(expected, abs=1e-5)
    # deterministic: best valid choice (first of the tied valid ones) and the top-2 valid items (0, then 3)
    assert a.mode().tolist() == [[0, 0, 3]]


def test_masked_items_are_never_sampled_and_padding_adds_nothing() -> None:
    torch.manual_seed(0)
    n, k = 6, 3
    logits = torch.zeros(500, 2 + n)
    dist = SlateDistribution(2, n, k).proba_distribution(logits)
    item_mask = [True, False, True, True, False, True]
    dist.apply_masking(np.tile([True, True] + item_mask * k, (500, 1)))
    actions = dist.sample()
    assert actions.dtype == torch.int64
    assert set(actions[:, 1:].reshape(-1).tolist()) <= {0, 2, 3, 5}
    assert all(len(set(row)) == k for row in actions[:, 1:].tolist())
    # only 2 valid items for a slate of 3: the third slot is padding and adds nothing to the log-prob
    few = SlateDistribution(2, 4, 3).proba_distribution(torch.tensor([[0.0, 0.0, 1.0, 0.5, 0.0, 0.0]]))
    few.apply_masking(np.array([[True, True] + [True, True, False, False] * 3]))
    slate = few.mode()
    assert slate[0, 1:3].tolist() == [0, 1]
    slate[0, 0] = 1  # recommend
    # log p(rec) = log 1/2; PL over {0, 1}: [1 - lse(1, .5)] + [.5 - .5]
    expected = math.log(0.5) + (1.0 - lse([1.0, 0.5]))
    assert few.log_prob(slate).item() == pytest.approx(expected, abs=1e-5)


def test_gumbel_top_k_first_position_follows_the_softmax() -> None:
    torch.manual_seed(1)
    items = torch.tensor([1.0, 0.0, -1.0, 0.5])
    logits = torch.cat([torch.zeros(1), items]).repeat(20000, 1)
    dist = SlateDistribution(1, 4, 2).proba_distribution(logits)
    first = dist.sample()[:, 1]
    freq = torch.bincount(first, minlength=4).float() / first.numel()
    # softmax(1, 0, -1, .5) = (.417, .153, .056, .253) (within 3 standard errors of 20000 draws)
    assert torch.allclose(freq, torch.softmax(items, 0), atol=0.012)


def test_entropy_scales_the_slate_term_by_one_over_k() -> None:
    n, k = 8, 4
    dist = SlateDistribution(2, n, k).proba_distribution(torch.zeros(1, 2 + n))
    # uniform choices (log 2) + p(rec) = 1/2 times (1/k) * k * log 8
    assert dist.entropy().item() == pytest.approx(math.log(2) + 0.5 * math.log(8), abs=1e-5)


def test_ranker_order_slate_shows_the_first_k_slots_and_only_the_choice_is_random() -> None:
    choice, items = [0.5, -0.2, 1.0], [0.3, -1.0, 2.0, 0.0]
    dist = SlateDistribution(n_choices=3, n_items=4, slate_size=2, learn_order=False)
    dist.proba_distribution(torch.tensor([choice + items] * 50, dtype=torch.float32))
    torch.manual_seed(0)
    sampled = dist.sample()
    assert (sampled[:, 1:] == torch.tensor([0, 1])).all()  # slot 0 and 1, whatever the item logits say
    assert set(sampled[:, 0].tolist()) == {0, 1, 2}  # the choice is still drawn
    assert dist.mode()[0].tolist() == [2, 0, 1]
    # the slate adds nothing: log p = log p(choice), entropy = the choice's entropy
    recommend = torch.tensor([[2, 0, 1]])
    assert dist.log_prob(recommend)[0].item() == pytest.approx(choice[2] - lse(choice), abs=1e-5)
    probs = [math.exp(c - lse(choice)) for c in choice]
    assert dist.entropy()[0].item() == pytest.approx(-sum(p * math.log(p) for p in probs), abs=1e-5)


def test_entropy_weighs_the_masked_slate_entropy_by_the_recommend_probability() -> None:
    # non-uniform choices (recommend is the last, not the first) and a masked item with the largest logit
    choice, items = [2.0, 0.0, 1.0], [1.0, 0.0, -1.0, 3.0]
    k = 2
    dist = dist_with(choice, items, k)
    dist.apply_masking(np.array([[True, True, True] + [True, True, True, False] * k]))
    p = [math.exp(c - lse(choice)) for c in choice]
    q = [math.exp(v - lse(items[:3])) for v in items[:3]]  # the slate's first position, item 3 masked
    h_choice = -sum(x * math.log(x) for x in p)
    h_item = -sum(x * math.log(x) for x in q)
    # H(choice) + p(recommend) · (1/k) · k · H(first position): p(recommend) = p[2] = .245, not p[0] = .665
    expected = h_choice + p[2] * (1 / k) * k * h_item
    assert dist.entropy().item() == pytest.approx(expected, abs=1e-5)
