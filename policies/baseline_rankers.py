"""The fixed baseline preference rankers (numpy only): UNICORN's TransE embeddings, popularity, and
"uniform", a ranker without preferences.

They implement `envs.ranker.PreferenceRanker`; `policies.rankers.RankerSpec` names and builds them.

UNICORN's preference scores, with e_u the user, A+ the accepted and A- the rejected aspects:

- item v: e_u·e_v + Σ_{a∈A+} e_a·e_v − Σ_{a∈A−, a∈aspects(v)} σ(e_a·e_v)
- aspect a: e_u·e_a + Σ_{b∈A+} e_b·e_a

"uniform" (`uniform_ranker`) is the pre-trained persona ranker's dialogue logic with every learned
weight zero and one persona per user: every item scores the same until the dialogue speaks, then
items holding a rejected aspect lose ``REJECTED_ASPECT_PENALTY`` per aspect and rejected items drop to
the bottom; a question's score is the share of the still-consistent items holding the aspect. It
answers "what do the learned preferences add over the dialogue alone?" (on LastFM*, they cost: the
trained ranker scores items never seen in training near the bottom; BENCHMARKS.md). "uniform+split"
is the same ranker asking the question whose answer splits the consistent items most evenly
(`PersonaRanker.with_questions`) instead of the aspect the wanted item most likely has.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from envs.ranker import DialogueFacts, check_facts
from policies.pretrain.ranker import PersonaRanker
from simulators.catalog import Catalog
from simulators.errors import CRSError, DatasetError
from simulators.safe_pickle import read_pickle


def load_embedding_pickle(path: str | Path) -> dict[str, np.ndarray]:
    """Load a pickled dict of numpy arrays through the restricted reader (`simulators.safe_pickle`).

    Raises:
        DatasetError: the file is missing or not a pickled dict of arrays.
        UnsafePickleError: the pickle names a refused global or builds a refused value (a
            `DatasetError` naming the file).
    """
    data = read_pickle(path, "a pickled dict {'ui_emb', 'feature_emb'} (UNICORN's transe.pkl)")
    if not isinstance(data, dict):
        raise DatasetError(path, "", "a dict of arrays", type(data).__name__)
    return data


def _checked_embedding(
    data: Mapping[str, object], key: str, path: str | Path, n_rows: int, what: str, width: int | None
) -> np.ndarray:
    """``data[key]`` checked to be a finite real float array of shape (n_rows, width).

    Args:
        data: The loaded pickle.
        key: The entry to check ("ui_emb" or "feature_emb").
        path: The pickle (for messages).
        n_rows: The rows the catalogue needs.
        what: What the rows are, in words (for messages).
        width: The embedding width fixed by an earlier entry, or None to accept any width >= 1.

    Returns:
        The array, unchanged.

    Raises:
        DatasetError: Naming `key`, the expected shape and what was found.
    """
    shape_text = f"({n_rows}, {width if width is not None else 'd'})"
    expected = f"a finite float array of shape {shape_text}: {n_rows} rows for the {what}"
    if width is not None:
        expected += f", width {width} as in ui_emb"
    if key not in data:
        raise DatasetError(path, key, expected, "no such key")
    array = data[key]
    if not isinstance(array, np.ndarray):
        raise DatasetError(path, key, expected, f"a {type(array).__name__}")
    right_width = array.ndim == 2 and (array.shape[1] == width if width is not None else array.shape[1] >= 1)
    # dtype kind "f": real floats; refuses int, bool, complex, object, string and structured arrays.
    if array.dtype.kind != "f" or array.shape[:1] != (n_rows,) or not right_width:
        raise DatasetError(path, key, expected, f"shape {array.shape}, dtype {array.dtype}")
    finite = np.isfinite(array)
    if not finite.all():
        row, column = (int(i) for i in np.argwhere(~finite)[0])
        raise DatasetError(
            path,
            key,
            expected,
            f"{int((~finite).sum())} NaN or infinite values (first {array[row, column]} at row {row}, "
            f"column {column})",
        )
    return array


class TransERanker:
    """UNICORN's preference scores from TransE embeddings (users first, then items, in ui_emb).

    Args:
        user_emb: User embeddings, shape (n_users, d).
        item_emb: Item embeddings, shape (n_items, d).
        aspect_emb: Aspect embeddings, shape (n_aspects, d).
        catalog: The catalogue the embeddings belong to (for aspects(v) of rejected aspects).
    """

    def __init__(self, user_emb: np.ndarray, item_emb: np.ndarray, aspect_emb: np.ndarray, catalog: Catalog):
        expected = (catalog.n_users, catalog.n_items, catalog.n_aspects)
        found = (user_emb.shape[0], item_emb.shape[0], aspect_emb.shape[0])
        if expected != found:
            raise CRSError(
                f"TransE embeddings cover (users, items, aspects) = {found} but catalogue {catalog.name} "
                f"has {expected}: use the embedding file of this dataset"
            )
        self.user_emb = np.asarray(user_emb, dtype=np.float64)
        self.item_emb = np.asarray(item_emb, dtype=np.float64)
        self.aspect_emb = np.asarray(aspect_emb, dtype=np.float64)
        self.catalog = catalog

    @classmethod
    def from_file(cls, path: str | Path, catalog: Catalog) -> TransERanker:
        """Load UNICORN's `transe.pkl` ({"ui_emb": (n_users + n_items, d), "feature_emb": (n_aspects, d)}).

        Loaded embeddings are checked to be finite, real-valued, 2-D, of one width d >= 1, with one row
        per user and item (``ui_emb``, users first) and per aspect (``feature_emb``) of `catalog`.

        Raises:
            DatasetError: The file is missing or unreadable, or an array has the wrong shape, dtype or
                non-finite values; the message names the key and the expected shape.
            UnsafePickleError: The pickle names a refused global or builds a refused value.
        """
        data = load_embedding_pickle(path)
        rows = {
            "ui_emb": (
                catalog.n_users + catalog.n_items,
                f"{catalog.n_users} users + {catalog.n_items} items of {catalog.name}",
            ),
            "feature_emb": (catalog.n_aspects, f"{catalog.n_aspects} aspects of {catalog.name}"),
        }
        width: int | None = None
        for key, (n_rows, what) in rows.items():
            array = _checked_embedding(data, key, path, n_rows, what, width)
            width = array.shape[1]
        ui = data["ui_emb"]
        return cls(ui[: catalog.n_users], ui[catalog.n_users :], data["feature_emb"], catalog)

    @property
    def n_users(self) -> int:
        return len(self.user_emb)

    @property
    def n_items(self) -> int:
        return len(self.item_emb)

    @property
    def n_aspects(self) -> int:
        return len(self.aspect_emb)

    def _check_facts(self, facts: DialogueFacts) -> None:
        check_facts(facts, self.n_users, self.n_aspects, self.n_items)

    def item_scores(self, facts: DialogueFacts, items: np.ndarray) -> np.ndarray:
        self._check_facts(facts)
        items = np.asarray(items, dtype=np.int64)
        item_vecs = self.item_emb[items]
        query = self.user_emb[facts.user] + self.aspect_emb[facts.accepted].sum(axis=0)
        scores = item_vecs @ query
        for aspect in facts.rejected.tolist():  # few per dialogue: one item mask each
            has = np.zeros(self.catalog.n_items, dtype=np.bool_)
            has[self.catalog.items_with(aspect)] = True
            holders = has[items]
            sims = item_vecs[holders] @ self.aspect_emb[aspect]
            scores[holders] -= 1.0 / (1.0 + np.exp(-sims))
        return scores

    def aspect_scores(self, facts: DialogueFacts, aspects: np.ndarray) -> np.ndarray:
        self._check_facts(facts)
        query = self.user_emb[facts.user] + self.aspect_emb[facts.accepted].sum(axis=0)
        return self.aspect_emb[np.asarray(aspects, dtype=np.int64)] @ query


class PopularityRanker:
    """Items by their interaction count in the pre-training split; aspects by their item count.

    A data-only baseline ranker for datasets without pre-trained embeddings.
    """

    def __init__(self, catalog: Catalog) -> None:
        split = catalog.split(catalog.pretrain_split)
        self.item_popularity = np.bincount(split.items, minlength=catalog.n_items).astype(np.float64)
        self.aspect_popularity = np.diff(catalog.aspect_items.indptr).astype(np.float64)

    @property
    def n_items(self) -> int:
        return len(self.item_popularity)

    @property
    def n_aspects(self) -> int:
        return len(self.aspect_popularity)

    def item_scores(self, facts: DialogueFacts, items: np.ndarray) -> np.ndarray:
        return self.item_popularity[np.asarray(items, dtype=np.int64)]

    def aspect_scores(self, facts: DialogueFacts, aspects: np.ndarray) -> np.ndarray:
        return self.aspect_popularity[np.asarray(aspects, dtype=np.int64)]


def uniform_ranker(catalog: Catalog) -> PersonaRanker:
    """The persona ranker's dialogue logic without preferences: all-zero weights, one persona per user
    (module docstring). Cheap: a few arrays of zeros next to the catalogue's item-aspect matrix."""
    users, items, aspects = catalog.n_users, catalog.n_items, catalog.n_aspects
    weights = {
        "user": np.zeros((users, 1)),
        "item": np.zeros((items, 1)),
        "aspect": np.zeros((aspects, 1)),
        "personas": np.zeros((users, 1, 1)),
        "log_prior": np.zeros((users, 1)),
        "mixtures": np.ones((users, 1, 1)),
        "prototypes": np.zeros((1, 1)),
    }
    return PersonaRanker(weights, catalog.item_aspects, "attention")
