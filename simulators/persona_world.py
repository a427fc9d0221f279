"""The synthetic persona world: the embedded default catalogue, with its ground truth.

A seeded generator of:

- **aspects** in named groups ("genre", "mood", "era", ...), each aspect a real word ("jazz");
- **items** with a primary group (3 aspects from it) and 1-2 secondary groups (1-2 aspects each),
  so 4-7 aspects per item, and a readable name ("Velvet Harbor");
- **personas**, shared prototypes: each a distribution over aspect groups concentrated on 1-2 groups,
  and 2-4 **signature aspects** inside those groups: the specific aspects it really cares about;
- **users**, each a Dirichlet mixture of K distinct personas;
- **interactions**: per interaction a persona slot is drawn by the user's weights, then an item with
  probability proportional to exp(u_p(item)) among the items the user has not yet taken, where

      u_p(i) = SIGNATURE_WEIGHT * |signature(p) ∩ aspects(i)|
             + GROUP_WEIGHT * Σ_{a ∈ aspects(i)} persona_groups[p, group(a)]
             + popularity(i),      popularity(i) ~ Normal(0, POPULARITY_STD).

  Each interaction records the persona that produced it; each user's interactions are split about
  70/15/15 into train/valid/test (valid and test: 15% rounded half to even, so the default 30 per
  user give 22/4/4), with at least one in each split.

The signature term dominates the group term, so *which* aspects of an item matter (aspect attention)
is decisive, and a user's personas are different enough that *which* persona speaks for a candidate
(persona attention) is decisive too: tests/simulators/test_persona_world.py measures both on the
held-out test split with ground-truth scorers.
"""

from __future__ import annotations

import functools
import inspect
import itertools
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from simulators.catalog import Catalog, Interactions, PersonaTruth
from simulators.errors import CRSError

SIGNATURE_WEIGHT: float = 3.0
"""Utility of each signature aspect of the persona that an item has."""

GROUP_WEIGHT: float = 0.5
"""Utility per item aspect, times the persona's weight on that aspect's group."""

POPULARITY_STD: float = 0.5
"""Standard deviation of the items' log-popularity (the same for every persona)."""

WEIGHT_CONCENTRATION: float = 2.0
"""Dirichlet concentration of each user's persona weights (larger: more evenly mixed users)."""


@dataclass(frozen=True)
class WorldUser:
    """How the persona world's simulated users behave unless told otherwise (`PersonaUser` arguments).

    Realistic about rejections and imprecise, so that a recommender's choices matter: with users who
    never leave and always answer truly, recommending every turn succeeded about 9 times in 10 and a
    fixed rule about 99 in 100 (three personas per user; BENCHMARKS.md, "the showcase world").

    Attributes:
        noise: Probability that an answer flips an aspect's truth.
        patience: Failed slates after which the user leaves (None: never).
        drift: Per-turn probability that the active persona changes.
    """

    noise: float = 0.05
    patience: int | None = 2
    drift: float = 0.0


WORLD_USER = WorldUser()
"""The persona world's default user (`envs.make_env`, `crs train`/`eval`/`chat --simulate`)."""

WORLD_PERSONAS_PER_USER: int = 4
"""K, the distinct personas each user of the default world has (of `n_personas`). Four competing tastes
rather than three (the default before session 10) make the user's history a weaker guide to today's
target: recommending every turn then succeeds in fewer than half of the conversations, and asking or
probing is what finds the side that speaks today (BENCHMARKS.md, "the showcase world", #15). The
pre-trained ranker keeps its own K (`policies.pretrain.config.ModelShape.personas`, 3)."""

SPLIT_FRACTIONS: tuple[float, float] = (0.15, 0.15)
"""Fractions of each user's interactions held out for valid and test (at least one each)."""

ASPECT_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("genre", ("jazz", "folk", "rock", "blues", "soul", "reggae", "techno", "opera", "funk", "punk")),
    ("mood", ("melancholic", "joyful", "dreamy", "angry", "calm", "romantic", "dark", "playful")),
    ("era", ("sixties", "seventies", "eighties", "nineties", "baroque", "victorian", "modern", "future")),
    ("tempo", ("slow", "brisk", "driving", "lilting", "frantic", "steady", "swaying", "halting")),
    ("instrument", ("piano", "violin", "trumpet", "banjo", "synthesizer", "cello", "harp", "drums")),
    ("setting", ("harbor", "desert", "city", "forest", "island", "mountain", "village", "space")),
    ("voice", ("whispered", "choral", "raspy", "falsetto", "spoken", "operatic", "crooning", "rapped")),
    ("language", ("french", "spanish", "italian", "german", "japanese", "swahili", "portuguese", "gaelic")),
    ("theme", ("love", "war", "travel", "family", "revolution", "dreams", "nature", "memory")),
    ("texture", ("lush", "sparse", "gritty", "glossy", "airy", "dense", "raw", "polished")),
)
"""Groups and their aspect words, in order; words are unique across groups."""

ITEM_ADJECTIVES: tuple[str, ...] = (
    "Velvet", "Silver", "Crimson", "Hollow", "Golden", "Quiet", "Wild", "Broken", "Electric", "Paper",
    "Midnight", "Amber", "Frozen", "Distant", "Neon", "Gentle", "Iron", "Lonely", "Bright", "Secret",
    "Scarlet", "Faded", "Burning", "Silent", "Copper", "Restless", "Hidden", "Painted", "Salt", "Cobalt",
    "Wandering", "Emerald", "Ashen", "Sunlit", "Stormy", "Tender", "Marble", "Ivory", "Rusty", "Glass",
)  # fmt: skip

ITEM_NOUNS: tuple[str, ...] = (
    "Harbor", "Garden", "River", "Lantern", "Mirror", "Orchard", "Tower", "Meadow", "Station", "Echo",
    "Compass", "Horizon", "Canyon", "Letter", "Carousel", "Lighthouse", "Parade", "Window", "Bridge",
    "Comet", "Fountain", "Chapel", "Engine", "Feather", "Island", "Kingdom", "Ladder", "Moon", "Ocean",
    "Pilgrim", "Quarry", "Ribbon", "Shadow", "Thunder", "Valley", "Whistle", "Ember", "Forest", "Signal",
    "Voyage",
)  # fmt: skip


def make_persona_world(
    n_users: int = 600,
    n_items: int = 3000,
    n_groups: int = 8,
    aspects_per_group: int = 6,
    n_personas: int = 8,
    personas_per_user: int = WORLD_PERSONAS_PER_USER,
    interactions_per_user: int = 30,
    seed: int = 0,
) -> Catalog:
    """Build the persona world, fully determined by `seed`.

    Built once per process for each set of arguments: the catalogue is immutable, so every command
    and test asking for one world shares it (the default one takes about half a second to build).
    `build_persona_world` builds a new one on every call.

    Args:
        n_users: Number of users.
        n_items: Number of items.
        n_groups: Number of aspect groups (at least 3: an item uses up to 3 groups).
        aspects_per_group: Aspects in each group (at least 4: a persona picks up to 4 signatures).
        n_personas: Number of shared persona prototypes.
        personas_per_user: K, distinct personas per user (at most n_personas).
        interactions_per_user: Interactions per user (at least 3, one per split; at most n_items).
        seed: Seed of the numpy Generator that draws everything.

    Returns:
        A `Catalog` named "persona_world" with train/valid/test splits whose `personas` hold the
        ground-truth persona id of every interaction, and `truth` filled (see `PersonaTruth`).

    Raises:
        CRSError: An argument is out of range; the message names it and the allowed range.
    """
    arguments = (
        n_users,
        n_items,
        n_groups,
        aspects_per_group,
        n_personas,
        personas_per_user,
        interactions_per_user,
        seed,
    )
    _check_arguments(*arguments)
    return _memoised_world(*arguments)


@functools.lru_cache(maxsize=8)
def _memoised_world(*arguments: int) -> Catalog:
    return build_persona_world(*arguments)


def build_persona_world(
    n_users: int = 600,
    n_items: int = 3000,
    n_groups: int = 8,
    aspects_per_group: int = 6,
    n_personas: int = 8,
    personas_per_user: int = WORLD_PERSONAS_PER_USER,
    interactions_per_user: int = 30,
    seed: int = 0,
) -> Catalog:
    """`make_persona_world` without its memo: a new catalogue on every call, same arguments, same errors."""
    _check_arguments(
        n_users,
        n_items,
        n_groups,
        aspects_per_group,
        n_personas,
        personas_per_user,
        interactions_per_user,
        seed,
    )
    rng = np.random.default_rng(seed)
    group_names, aspect_names = _aspect_vocabulary(n_groups, aspects_per_group)
    aspect_group = np.repeat(np.arange(n_groups, dtype=np.int64), aspects_per_group)

    item_aspects = _draw_items(rng, n_items, n_groups, aspects_per_group)
    item_names = _item_names(rng, n_items)
    persona_groups, persona_aspects = _draw_personas(rng, n_personas, n_groups, aspects_per_group)
    persona_names = _persona_names(persona_aspects, aspect_names)

    user_personas = np.stack(
        [rng.choice(n_personas, size=personas_per_user, replace=False) for _ in range(n_users)]
    ).astype(np.int64)
    user_weights = rng.dirichlet(np.full(personas_per_user, WEIGHT_CONCENTRATION), size=n_users)

    utilities = persona_utilities(item_aspects, aspect_group, persona_groups, persona_aspects)
    utilities = utilities + rng.normal(0.0, POPULARITY_STD, size=n_items)[None, :]
    users, items, personas = _draw_interactions(
        rng, utilities, user_personas, user_weights, interactions_per_user
    )
    splits = _split_per_user(rng, users, items, personas, n_users, interactions_per_user)

    truth = PersonaTruth(
        aspect_group=aspect_group,
        persona_groups=persona_groups,
        persona_aspects=persona_aspects,
        user_personas=user_personas,
        user_weights=user_weights,
        group_names=group_names,
        persona_names=persona_names,
    )
    return Catalog(
        name="persona_world",
        item_aspects=item_aspects,
        item_names=item_names,
        aspect_names=aspect_names,
        n_users=n_users,
        splits=splits,
        taxonomy=None,
        notes=(f"synthetic persona world (seed {seed})",),
        truth=truth,
    )


def persona_utilities(
    item_aspects: sp.csr_matrix,
    aspect_group: np.ndarray,
    persona_groups: np.ndarray,
    persona_aspects: np.ndarray,
) -> np.ndarray:
    """The deterministic part of each persona's utility for each item (no popularity).

    u_p(i) = SIGNATURE_WEIGHT * |signature(p) ∩ aspects(i)|
           + GROUP_WEIGHT * Σ_{a ∈ aspects(i)} G[p, group(a)].

    Args:
        item_aspects: Item x aspect boolean matrix, shape (n_items, n_aspects).
        aspect_group: Group of each aspect, shape (n_aspects,).
        persona_groups: G, persona distributions over groups, shape (n_personas, n_groups).
        persona_aspects: Signature aspects, boolean, shape (n_personas, n_aspects).

    Returns:
        Utilities, shape (n_personas, n_items), float64.
    """
    aspect_weights = (
        SIGNATURE_WEIGHT * persona_aspects.astype(np.float64)
        + GROUP_WEIGHT * np.asarray(persona_groups, dtype=np.float64)[:, aspect_group]
    )
    matrix = sp.csr_matrix(item_aspects, dtype=np.float64)
    return np.asarray(matrix @ aspect_weights.T).T


WORLD_SIZE_LIMITS = {
    "n_users": 20_000,
    "n_items": 50_000,
    "n_groups": 64,
    "aspects_per_group": 64,
    "n_personas": 256,
    "interactions_per_user": 1_000,
}
"""The largest persona world a config may ask for: 20,000 users x 50,000 items builds in about two
minutes on a 2-core machine; without limits a shared run's config of 2e9 items made `crs report` and
`crs train --resume` hang."""
WORLD_DEFAULT_SIZES = {
    name: parameter.default
    for name, parameter in inspect.signature(build_persona_world).parameters.items()
    if name in WORLD_SIZE_LIMITS
}


def _check_arguments(
    n_users: int,
    n_items: int,
    n_groups: int,
    aspects_per_group: int,
    n_personas: int,
    personas_per_user: int,
    interactions_per_user: int,
    seed: int,
) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise CRSError(f"make_persona_world: seed={seed!r} must be an integer >= 0")
    checks = (
        ("n_users", n_users, 1, None),
        ("n_items", n_items, 1, None),
        ("n_groups", n_groups, 3, None),
        ("aspects_per_group", aspects_per_group, 4, None),
        ("n_personas", n_personas, 1, None),
        ("personas_per_user", personas_per_user, 1, n_personas),
        ("interactions_per_user", interactions_per_user, 3, n_items),
    )
    for name, value, *_ in checks:  # a float or a bool is no size (`range` would fail on it later)
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise CRSError(f"make_persona_world: {name}={value!r} must be an integer")
    for name, value, _, _ in checks:  # a shared config must not make a command build for hours
        if name in WORLD_SIZE_LIMITS and value > WORLD_SIZE_LIMITS[name]:
            raise CRSError(
                f"make_persona_world: {name}={value} is above its limit {WORLD_SIZE_LIMITS[name]:,} "
                f"(the default world has {WORLD_DEFAULT_SIZES[name]:,}); use a smaller world"
            )
    for name, value, low, high in checks:
        if high is not None and value > high:  # the bound is another argument's value
            bound = "n_personas" if name == "personas_per_user" else "n_items"
            fix = f" (and {name} at least {low}: raise {bound})" if high < low else ""
            raise CRSError(f"make_persona_world: {name}={value} must be at most {bound}={high}{fix}")
        if value < low:
            raise CRSError(f"make_persona_world: {name}={value} must be >= {low}")


def _aspect_vocabulary(n_groups: int, aspects_per_group: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Group names and aspect names (group-major). Beyond the word lists, names get a numeric suffix."""
    group_names: list[str] = []
    aspect_names: list[str] = []
    for g in range(n_groups):
        base_group, words = ASPECT_WORDS[g % len(ASPECT_WORDS)]
        cycle = g // len(ASPECT_WORDS)
        group_names.append(base_group if cycle == 0 else f"{base_group} {cycle + 1}")
        for j in range(aspects_per_group):
            word = words[j % len(words)]
            repeat = cycle * ((aspects_per_group + len(words) - 1) // len(words)) + j // len(words)
            aspect_names.append(word if repeat == 0 else f"{word} {repeat + 1}")
    return tuple(group_names), tuple(aspect_names)


def _draw_items(
    rng: np.random.Generator, n_items: int, n_groups: int, aspects_per_group: int
) -> sp.csr_matrix:
    """Item x aspect matrix: primary group with 3 aspects, 1-2 secondary groups with 1-2 each.

    Returns:
        Boolean CSR matrix, shape (n_items, n_groups * aspects_per_group); 4-7 aspects per item.
    """
    rows: list[int] = []
    cols: list[int] = []
    for item in range(n_items):
        n_secondary = int(rng.integers(1, 3))
        groups = rng.choice(n_groups, size=1 + n_secondary, replace=False)
        for position, group in enumerate(groups):
            count = 3 if position == 0 else int(rng.integers(1, 3))
            chosen = rng.choice(aspects_per_group, size=count, replace=False)
            cols.extend((int(group) * aspects_per_group + chosen).tolist())
            rows.extend([item] * count)
    data = np.ones(len(rows), dtype=np.bool_)
    return sp.csr_matrix((data, (rows, cols)), shape=(n_items, n_groups * aspects_per_group), dtype=np.bool_)


def _item_names(rng: np.random.Generator, n_items: int) -> tuple[str, ...]:
    """Unique "Adjective Noun" names in a seeded order; past the combinations, a number suffix."""
    combos = [f"{a} {n}" for a, n in itertools.product(ITEM_ADJECTIVES, ITEM_NOUNS)]
    order = rng.permutation(len(combos))
    names = []
    for item in range(n_items):
        base = combos[int(order[item % len(combos)])]
        cycle = item // len(combos)
        names.append(base if cycle == 0 else f"{base} {cycle + 1}")
    return tuple(names)


def _draw_personas(
    rng: np.random.Generator, n_personas: int, n_groups: int, aspects_per_group: int
) -> tuple[np.ndarray, np.ndarray]:
    """Persona group distributions and signature aspects.

    Each persona has a main group (weight ~0.9, or ~0.5-0.7 when it has a second group) and, with
    probability 1/2, a second group that takes most of the rest; the small remainder is spread over
    all groups. Signatures: 2-4 aspects, drawn from the main group, and one from the second group when
    there is one. Main groups cycle through a seeded permutation of the groups so personas cover
    different groups.

    Returns:
        persona_groups, shape (n_personas, n_groups), rows sum to 1; persona_aspects, boolean,
        shape (n_personas, n_groups * aspects_per_group).
    """
    persona_groups = np.zeros((n_personas, n_groups))
    persona_aspects = np.zeros((n_personas, n_groups * aspects_per_group), dtype=np.bool_)
    main_groups = rng.permutation(n_groups)
    for p in range(n_personas):
        main = int(main_groups[p % n_groups])
        has_second = bool(rng.random() < 0.5)
        spread = rng.dirichlet(np.ones(n_groups)) * 0.1
        persona_groups[p] = spread
        n_signatures = int(rng.integers(2, 5))
        if has_second:
            second = int(rng.choice([g for g in range(n_groups) if g != main]))
            main_share = float(rng.uniform(0.55, 0.75))
            persona_groups[p, main] += 0.9 * main_share
            persona_groups[p, second] += 0.9 * (1.0 - main_share)
            in_main = rng.choice(aspects_per_group, size=n_signatures - 1, replace=False)
            in_second = rng.choice(aspects_per_group, size=1)
            persona_aspects[p, main * aspects_per_group + in_main] = True
            persona_aspects[p, second * aspects_per_group + in_second] = True
        else:
            persona_groups[p, main] += 0.9
            in_main = rng.choice(aspects_per_group, size=n_signatures, replace=False)
            persona_aspects[p, main * aspects_per_group + in_main] = True
    return persona_groups, persona_aspects


def _persona_names(persona_aspects: np.ndarray, aspect_names: tuple[str, ...]) -> tuple[str, ...]:
    """ "jazz & melancholic"-style names from the first two signatures; made unique with a suffix."""
    names: list[str] = []
    for p in range(persona_aspects.shape[0]):
        words = [aspect_names[a] for a in np.flatnonzero(persona_aspects[p])[:2]]
        base = " & ".join(words)
        name, k = base, 2
        while name in names:
            name, k = f"{base} ({k})", k + 1
        names.append(name)
    return tuple(names)


def _draw_interactions(
    rng: np.random.Generator,
    utilities: np.ndarray,
    user_personas: np.ndarray,
    user_weights: np.ndarray,
    per_user: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw each user's interactions without repeating items.

    Per user and persona slot, Gumbel noise is added to the persona's utilities once and items are
    sorted by it (a Gumbel race); the j-th draw of slot k takes the best item of that order that the
    user has not taken yet, which is a draw from softmax(utilities) over the items still free.

    Args:
        utilities: u_p(i) including popularity, shape (n_personas, n_items).
        user_personas: Persona ids, shape (n_users, K).
        user_weights: Mixture weights, shape (n_users, K).
        per_user: Interactions per user.

    Returns:
        users, items, personas: each shape (n_users * per_user,), int64, grouped by user.
    """
    n_users, k = user_personas.shape
    n_items = utilities.shape[1]
    users = np.repeat(np.arange(n_users, dtype=np.int64), per_user)
    items = np.empty(n_users * per_user, dtype=np.int64)
    personas = np.empty(n_users * per_user, dtype=np.int64)
    for user in range(n_users):
        slots = rng.choice(k, size=per_user, p=user_weights[user])
        race = utilities[user_personas[user]] + rng.gumbel(size=(k, n_items))
        # A slot takes at most `per_user` items and skips at most `per_user - 1` taken by other
        # slots, so only the head of its order is ever read: the best `depth` items, sorted.
        depth = min(n_items, 2 * per_user)
        head = np.argpartition(-race, depth - 1, axis=1)[:, :depth]
        orders = np.take_along_axis(head, np.argsort(-np.take_along_axis(race, head, axis=1), axis=1), axis=1)
        cursor = [0] * k
        taken: set[int] = set()
        for j, slot in enumerate(slots.tolist()):
            order = orders[slot]
            while int(order[cursor[slot]]) in taken:
                cursor[slot] += 1
            item = int(order[cursor[slot]])
            taken.add(item)
            items[user * per_user + j] = item
            personas[user * per_user + j] = user_personas[user, slot]
    return users, items, personas


def _split_per_user(
    rng: np.random.Generator,
    users: np.ndarray,
    items: np.ndarray,
    personas: np.ndarray,
    n_users: int,
    per_user: int,
) -> dict[str, Interactions]:
    """Shuffle each user's interactions and cut them into train/valid/test (>= 1 each)."""
    n_valid = max(1, round(per_user * SPLIT_FRACTIONS[0]))
    n_test = max(1, round(per_user * SPLIT_FRACTIONS[1]))
    n_train = per_user - n_valid - n_test
    if n_train < 1:
        n_valid, n_test, n_train = 1, 1, per_user - 2
    positions = np.argsort(rng.random((n_users, per_user)), axis=1) + per_user * np.arange(n_users)[:, None]
    cuts = {
        "train": positions[:, :n_train],
        "valid": positions[:, n_train : n_train + n_valid],
        "test": positions[:, n_train + n_valid :],
    }
    return {
        name: Interactions(users=users[idx.ravel()], items=items[idx.ravel()], personas=personas[idx.ravel()])
        for name, idx in cuts.items()
    }
