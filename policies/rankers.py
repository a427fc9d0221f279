"""Naming, recording and building a preference ranker: `RankerSpec`, the one reader of ranker strings.

A ranker is named in one of two formats, and `RankerSpec.parse` reads both:

- a name, as typed (``--ranker``, ``ranker:`` in a training config) and as an evaluation's summary.json
  shows it: "popularity", "uniform" (no preferences: the persona ranker's dialogue logic over all-zero
  weights, `policies.baseline_rankers.uniform_ranker`), "transe" (UNICORN's LastFM embeddings in the
  data folder), "pretrain" (`crs train` only: pre-train one into the run), the path of a `crs
  pretrain` artifact, or "run" (a trained run's own ranker);
- an entry, as a run's policy.json records it (and its summary.json shows it): "popularity", "uniform",
  "transe:<file>" or "artifact:<dir>"; a relative <file> or <dir> lies in the run folder
  ("artifact:ranker").

A persona ranker ("uniform", "pretrain", an artifact) may end in ``+profile`` (`PROFILE_SUFFIX`), in
names and entries alike: each item's score then gains the user's tag profile score, how much its
aspects look like those of the user's pre-training items (`policies.content_profile`,
`PersonaRanker.with_profile`), e.g. ``uniform+profile``; ``+profile:W`` sets its weight W (default
`PROFILE_WEIGHT`), e.g. ``DIR+profile:20@20`` for an artifact whose preferences are divided by 20 and
whose profile then weighs 1. It may then end in ``+pop`` (`POPULARITY_SUFFIX`): each item's score gains
an item popularity prior, weight · log(1 + how often the pre-training interactions hold it)
(`policies.popularity_prior`, `PersonaRanker.with_item_prior`); ``+pop:W`` sets its weight W (default
`POPULARITY_WEIGHT`), e.g. ``uniform+profile+pop``. It may then end in ``+open`` (`OPENING_SUFFIX`):
each item's score gains the likelihood of the binary setting's opening, −weight · log(how many aspects
the item holds) (`policies.opening_prior`); ``+open:W`` sets its weight W (default `OPENING_WEIGHT`).
It may end in ``+split`` (`SPLIT_SUFFIX`, after ``+profile``, ``+pop`` and ``+open``): it then asks
the question whose answer splits the consistent candidates most evenly instead of the aspect the wanted
item most likely has (`PersonaRanker.with_questions`); ``+split:T`` weighs the candidates by
softmax(scores / T) when it splits them (T < 1: by what the ranker finds likely; the slates keep its
order). It may also end in ``@T`` (`TEMPERATURE_MARK`, at the very end), a number above 0: its learned
preferences (and profile and priors) are divided by T, its rejection rules kept
(`PersonaRanker.with_temperature`), e.g. ``runs/pretrain/yelp_star-l1+split@4``. A name is written in
that order (`RankerSpec.name`).

Adding a ranker: implement `envs.ranker.PreferenceRanker` (numpy-only ones in `policies.baseline_rankers`),
add its name to `KINDS` (and `NAMES` or `ENTRY_KINDS`) and a branch to `RankerSpec.build`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from envs.ranker import PreferenceRanker
from policies.baseline_rankers import PopularityRanker, TransERanker, uniform_ranker
from policies.content_profile import DEFAULT_SPLIT, PROFILE_WEIGHT, ContentProfile
from policies.opening_prior import OPENING_WEIGHT, opening_prior
from policies.popularity_prior import POPULARITY_WEIGHT, popularity_prior
from policies.pretrain.config import CONFIG_FILE, read_artifact_config, shape_attentions
from policies.pretrain.ranker import QUESTION_RULES, PersonaRanker
from simulators.catalog import Catalog
from simulators.datasets import resolve_data_dir
from simulators.errors import CRSError

log = logging.getLogger(__name__)

RankerKind = Literal["popularity", "uniform", "transe", "pretrain", "run", "artifact"]
DATA_FREE: tuple[RankerKind, ...] = ("popularity", "uniform")  # built from the catalogue alone, no file
PERSONA_KINDS: tuple[RankerKind, ...] = ("uniform", "pretrain", "artifact")  # build a `PersonaRanker`
PROFILE_SUFFIX = "+profile"  # a persona ranker with the users' tag profiles (module docstring)
WEIGHT_MARK = ":"  # "+profile:W" / "+pop:W" / "+open:W": the profile's or a prior's weight W
POPULARITY_SUFFIX = "+pop"  # a persona ranker with an item popularity prior (module docstring)
OPENING_SUFFIX = "+open"  # a persona ranker with the opening's likelihood (module docstring)
SPLIT_SUFFIX = "+split"  # a persona ranker asking splitting questions (module docstring)
TEMPERATURE_MARK = "@"  # "<ranker>@T": a persona ranker with tempered preferences (module docstring)
KINDS: tuple[RankerKind, ...] = (*DATA_FREE, "transe", "pretrain", "run", "artifact")
NAMES: tuple[RankerKind, ...] = (*DATA_FREE, "transe", "pretrain", "run")  # a whole kind by name
ENTRY_KINDS: tuple[RankerKind, ...] = ("transe", "artifact")  # "kind:<where>" entries
RANKER_NAMES = ("transe", *DATA_FREE)  # what `crs eval --ranker` takes besides an artifact
TRANSE_FILE = Path("lastfm") / "embeds" / "transe.pkl"  # under the data folder
PRETRAIN_DIR = "ranker"  # where `crs train --ranker pretrain` saves its artifact, in the run folder
CHOICES = f"one of {RANKER_NAMES}, 'pretrain' (crs train) or a `crs pretrain` artifact directory"
PINNED_CONFIG_KEYS = ("model", "split", "seed")
"""The parts of an artifact's config.json its identity covers (`RankerSpec.identity`): what the ranker
computes (``model``: its shape, ``aspect_mode``) and which data its pre-training held out (``split``, and
``seed``, which draws the hold-out); not its timings, metrics or history."""
ENTRY_CHOICES = (
    "'popularity', 'uniform', 'transe:<file>' or 'artifact:<dir>' ('uniform' and artifacts may end "
    "in '+profile' or '+profile:W', then '+pop' or '+pop:W', then '+open' or '+open:W', then '+split' "
    "or '+split:T', then '@T')"
)


def transe_file(data_dir: str | Path | None) -> Path:
    """UNICORN's TransE file under the data folder, or under the lastfm folder itself when that is the
    folder given (as the datasets' loaders accept it)."""
    base = resolve_data_dir(data_dir)
    in_dataset = TRANSE_FILE.relative_to(TRANSE_FILE.parts[0])  # embeds/transe.pkl
    if not (base / TRANSE_FILE.parts[0]).is_dir() and (base / in_dataset.parent).is_dir():
        return base / in_dataset
    return base / TRANSE_FILE


class RankerChangedError(CRSError):
    """A trained run's ranker file or folder is gone, or holds another ranker than the run trained with."""


def _unknown_part(text: str) -> str:
    """ " (+x is not one of ...)" for the first part of `text` after a "+" that names no modifier, or
    " (+pop:x: 'x' is not a number ...)" for a modifier whose weight is not a number; "" for neither."""
    modifiers = (PROFILE_SUFFIX, POPULARITY_SUFFIX, OPENING_SUFFIX, SPLIT_SUFFIX)
    for part in text.split("+")[1:]:
        name, mark, weight = ("+" + part.partition(TEMPERATURE_MARK)[0]).partition(WEIGHT_MARK)
        if name not in modifiers:
            return f" ({name} is not one of {', '.join(modifiers)})"
        if mark and not _is_number(weight):
            return f" ({name}{mark}{weight}: {weight!r} is not a number, e.g. {name}{mark}0.5)"
    return ""


def _once(text: str, mark: str, inner: RankerSpec, has_it: Callable[[RankerSpec], bool]) -> RankerSpec:
    """`inner` (what `text` names before its last `mark`), checked not to have that part already.

    Raises:
        CRSError: `mark` is given twice in `text`.
    """
    if has_it(inner):
        raise CRSError(f"ranker {text!r} gives {mark} twice; give it once")
    return inner


@dataclass(frozen=True)
class RankerSpec:
    """A preference ranker by kind and place, before it is built.

    Attributes:
        kind: "popularity", "uniform", "transe", "pretrain", "run" (a trained run's own ranker) or
            "artifact".
        where: The TransE file or artifact folder as written ("": TransE's file in the data folder).
        questions: How a persona ranker scores questions, one of `QUESTION_RULES` ("split": named
            with `SPLIT_SUFFIX`).
        temperature: What a persona ranker's learned preferences are divided by (not 1: named with
            `TEMPERATURE_MARK`).
        profile: Whether a persona ranker adds the users' tag profiles to its item scores (named with
            `PROFILE_SUFFIX`).
        profile_weight: The profile score's weight (not `PROFILE_WEIGHT`: named with
            `WEIGHT_MARK` and W after `PROFILE_SUFFIX`); divided by T like the preferences.
        popularity_weight: The weight of a persona ranker's item popularity prior; 0 for none (named
            with `POPULARITY_SUFFIX`, and `WEIGHT_MARK` and W unless it is `POPULARITY_WEIGHT`);
            divided by T like the preferences.
        opening_weight: The weight of a persona ranker's opening likelihood (`policies.opening_prior`);
            0 for none (named with `OPENING_SUFFIX`, and `WEIGHT_MARK` and W unless it is
            `OPENING_WEIGHT`); divided by T like the preferences.
        question_temperature: What splitting questions divide the item scores by before they weigh the
            candidates (not 1: named with `WEIGHT_MARK` and T after `SPLIT_SUFFIX`).
    """

    kind: RankerKind
    where: str = ""
    questions: str = "likely"
    temperature: float = 1.0
    profile: bool = False
    profile_weight: float = PROFILE_WEIGHT
    popularity_weight: float = 0.0
    opening_weight: float = 0.0
    question_temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"ranker kind {self.kind!r} is not one of {KINDS}")
        if self.kind == "artifact" and not self.where:
            raise ValueError("an artifact ranker needs its folder")
        if self.kind in (*DATA_FREE, "pretrain", "run") and self.where:
            raise ValueError(f"ranker {self.kind!r} reads no file, not {self.where!r}")
        if self.questions not in QUESTION_RULES:
            raise ValueError(f"questions {self.questions!r} is not one of {QUESTION_RULES}")
        if self.questions != "likely" and self.kind not in PERSONA_KINDS:
            raise CRSError(
                f"ranker {self.kind!r} cannot ask splitting questions ({SPLIT_SUFFIX}): only a persona "
                f"ranker can, one of {PERSONA_KINDS}"
            )
        if not (math.isfinite(self.question_temperature) and self.question_temperature > 0):
            raise CRSError(
                f"question temperature {self.question_temperature!r} must be a finite number above 0, "
                f"e.g. {SPLIT_SUFFIX}{WEIGHT_MARK}0.03"
            )
        if self.question_temperature != 1.0 and self.questions != "split":
            raise ValueError(f"a question temperature ({self.question_temperature}) needs questions='split'")
        if self.profile and self.kind not in PERSONA_KINDS:
            raise CRSError(
                f"ranker {self.kind!r} cannot add tag profiles ({PROFILE_SUFFIX}): only a persona ranker "
                f"can, one of {PERSONA_KINDS}"
            )
        if not (math.isfinite(self.profile_weight) and self.profile_weight > 0):
            raise CRSError(
                f"profile weight {self.profile_weight!r} must be a finite number above 0, e.g. "
                f"{PROFILE_SUFFIX}{WEIGHT_MARK}1"
            )
        self._check_prior("popularity", self.popularity_weight, POPULARITY_SUFFIX, POPULARITY_WEIGHT)
        self._check_prior("opening", self.opening_weight, OPENING_SUFFIX, OPENING_WEIGHT)
        if self.profile_weight != PROFILE_WEIGHT and not self.profile:
            raise ValueError(f"a profile weight ({self.profile_weight}) needs profile=True")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise CRSError(
                f"ranker temperature {self.temperature!r} must be a finite number above 0, e.g. "
                f"{TEMPERATURE_MARK}4"
            )
        if self.temperature != 1.0 and self.kind not in PERSONA_KINDS:
            raise CRSError(
                f"ranker {self.kind!r} has no learned preferences to temper ({TEMPERATURE_MARK}T): only a "
                f"persona ranker has, one of {PERSONA_KINDS}"
            )

    def _check_prior(self, prior: str, weight: float, suffix: str, default: float) -> None:
        """Raise a CRSError unless `weight` is a finite number >= 0, and 0 unless a persona ranker."""
        if not (math.isfinite(weight) and weight >= 0):
            raise CRSError(
                f"{prior} weight {weight!r} must be a finite number >= 0 (0: no prior), e.g. "
                f"{suffix}{WEIGHT_MARK}{default}"
            )
        if weight and self.kind not in PERSONA_KINDS:
            raise CRSError(
                f"ranker {self.kind!r} cannot add the {prior} prior ({suffix}): only a persona ranker can, "
                f"one of {PERSONA_KINDS}"
            )

    @classmethod
    def parse(cls, text: str) -> RankerSpec:
        """The ranker a name ("popularity", "transe", "pretrain", "run", an artifact path) or a policy.json
        entry ("popularity", "transe:<file>", "artifact:<dir>") names; paths are kept as written.

        Raises:
            CRSError: Empty, or an entry without its file or folder; names the text and the choices;
                `PROFILE_SUFFIX`, `POPULARITY_SUFFIX`, `OPENING_SUFFIX`, `SPLIT_SUFFIX` or `TEMPERATURE_MARK`
                after a ranker that is not a persona ranker, a weight W or a T that is not a finite number
                above 0.
        """
        return cls._parse(text, text)

    @classmethod
    def _parse(cls, text: str, whole: str) -> RankerSpec:
        """`parse` of `text`, a part of the spec `whole` (what errors quote: all the user wrote)."""
        head, weight = _positive_suffix(text, SPLIT_SUFFIX, "question temperature", 1.0, whole)
        if head:
            inner = _once(
                whole, SPLIT_SUFFIX, cls._parse(head, whole), lambda spec: spec.questions == "split"
            )
            return replace(inner, questions="split", question_temperature=weight)
        head, weight = _positive_suffix(
            text, POPULARITY_SUFFIX, "popularity weight", POPULARITY_WEIGHT, whole
        )
        if head:
            inner = _once(
                whole, POPULARITY_SUFFIX, cls._parse(head, whole), lambda spec: spec.popularity_weight > 0
            )
            return replace(inner, popularity_weight=weight)
        head, weight = _positive_suffix(text, OPENING_SUFFIX, "opening weight", OPENING_WEIGHT, whole)
        if head:
            inner = _once(
                whole, OPENING_SUFFIX, cls._parse(head, whole), lambda spec: spec.opening_weight > 0
            )
            return replace(inner, opening_weight=weight)
        head, profile_weight = _weighted_suffix(text, PROFILE_SUFFIX)
        if head:
            weight_of_profile = float(profile_weight or PROFILE_WEIGHT)
            inner = _once(whole, PROFILE_SUFFIX, cls._parse(head, whole), lambda spec: spec.profile)
            return replace(inner, profile=True, profile_weight=weight_of_profile)
        head, mark, tail = text.rpartition(TEMPERATURE_MARK)
        if mark and head and _is_number(tail):
            inner = _once(
                whole, TEMPERATURE_MARK, cls._parse(head, whole), lambda spec: spec.temperature != 1.0
            )
            return replace(inner, temperature=float(tail))
        if text in NAMES:
            return cls(text)
        kind, sep, where = text.partition(":")
        if sep and kind in ENTRY_KINDS:
            if not where:
                raise CRSError(f"ranker {whole!r} names no {kind} file or folder: use {ENTRY_CHOICES}")
            return cls(kind, where)
        if not text.strip():
            raise CRSError(f"ranker {whole!r} is empty: use {CHOICES}")
        return cls("artifact", text)

    @classmethod
    def from_entry(cls, entry: str, origin: str) -> RankerSpec:
        """The ranker a run's policy.json entry names; `origin` says where the entry is (for messages).

        Raises:
            CRSError: Not "popularity", "transe:<file>" or "artifact:<dir>".
        """
        try:
            spec = cls.parse(entry)
        except CRSError:
            spec = None
        if spec is None or not spec.recordable or spec.entry != entry:
            raise CRSError(f"{origin}: unknown ranker entry {entry!r} (expected {ENTRY_CHOICES})")
        return spec

    @classmethod
    def default(cls, dataset: str) -> RankerSpec:
        """UNICORN's TransE ranker on LastFM (the only dataset it ships for), popularity elsewhere."""
        return cls("transe" if dataset == "lastfm" else "popularity")

    @property
    def name(self) -> str:
        """The name shown for it (an evaluation's summary.json): parses back to the same spec."""
        if self.kind == "artifact":
            return self.where + self._suffix
        return (f"{self.kind}:{self.where}" if self.where else self.kind) + self._suffix

    @property
    def _suffix(self) -> str:
        profile = PROFILE_SUFFIX if self.profile else ""
        if self.profile_weight != PROFILE_WEIGHT:
            profile += WEIGHT_MARK + _number(self.profile_weight)
        popularity = _prior_suffix(POPULARITY_SUFFIX, self.popularity_weight, POPULARITY_WEIGHT)
        opening = _prior_suffix(OPENING_SUFFIX, self.opening_weight, OPENING_WEIGHT)
        split = SPLIT_SUFFIX if self.questions == "split" else ""
        if self.question_temperature != 1.0:
            split += WEIGHT_MARK + _number(self.question_temperature)
        tempered = TEMPERATURE_MARK + _number(self.temperature) if self.temperature != 1.0 else ""
        return profile + popularity + opening + split + tempered

    @property
    def recordable(self) -> bool:
        """Whether it is a policy.json entry as it stands (`for_run` makes one)."""
        return self.kind in DATA_FREE or (self.kind in ENTRY_KINDS and bool(self.where))

    @property
    def entry(self) -> str:
        """The policy.json entry: "popularity", "uniform", "transe:<file>" or "artifact:<dir>" (the
        persona ones with `SPLIT_SUFFIX` and `TEMPERATURE_MARK` as in `name`).

        Raises:
            ValueError: Not `recordable` (default TransE, "pretrain", "run"): record `for_run(...)`.
        """
        if not self.recordable:
            raise ValueError(f"ranker {self.name!r} is not a policy.json entry; record its for_run()")
        return (self.kind if self.kind in DATA_FREE else f"{self.kind}:{self.where}") + self._suffix

    @property
    def path(self) -> Path | None:
        """The TransE file or artifact folder it names (None: none or TransE's default file)."""
        return Path(self.where) if self.where else None

    def check_dataset(self, dataset: str) -> None:
        """Refuse what its name alone says cannot rank `dataset`: TransE's published file (no file given)
        is LastFM's only.

        Raises:
            CRSError: Naming the dataset and the fix.
        """
        if self.kind == "transe" and self.path is None and dataset != "lastfm":
            raise CRSError(
                f"TransE embeddings are published for lastfm only, not {dataset}; use popularity or a "
                "`crs pretrain` artifact"
            )

    def resolve(self, run_dir: str | Path) -> RankerSpec:
        """The same ranker with a relative file or folder (a policy.json entry's) in `run_dir`."""
        path = self.path
        if path is None or path.is_absolute():
            return self
        return replace(self, where=str(Path(run_dir) / path))

    def for_run(self, data_dir: str | Path | None = None) -> RankerSpec:
        """What a `crs train` run records: TransE's file and artifacts as absolute paths, "pretrain" as
        the run's own "artifact:ranker".

        Raises:
            CRSError: "run" (a trained run's own ranker) trains nothing.
        """
        if self.kind in DATA_FREE:
            return self
        if self.kind == "pretrain":
            return replace(self, kind="artifact", where=PRETRAIN_DIR)
        if self.kind == "run":
            raise CRSError(f"ranker 'run' is a trained run's own ranker: train with {CHOICES}")
        path = self.path if self.path is not None else transe_file(data_dir)
        return replace(self, where=str(path.resolve()))

    def attentions(self) -> tuple[bool, bool] | None:
        """(persona attention, aspect attention) of the persona model an artifact ranker was pre-trained
        as (`policies.pretrain.config.shape_attentions`): an ablation variant whose flags these are
        compares with the others whole, ranker and policy. None for other kinds and for a folder (or
        relative path) with no artifact config.

        Raises:
            CRSError: The artifact's config is corrupt or incomplete.
        """
        if self.kind != "artifact" or self.path is None or not (self.path / CONFIG_FILE).is_file():
            return None
        return shape_attentions(read_artifact_config(self.path)["model"])

    def identity(self) -> str:
        """What the ranker is by content, so that two copies of one ranker compare equal: "popularity",
        "uniform"; "transe" or "transe:<sha1 of the file>"; "artifact:<sha1 of the artifact's tensor
        files (``*.pt``) and of the parts of its config.json that set what it computes or which data it
        held out (`PINNED_CONFIG_KEYS`: the model block, the split and the seed; not timings, metrics or
        history)>" (a folder that cannot be read, or whose config.json cannot: its absolute path);
        "pretrain" and "run" name no ranker by themselves; each with `PROFILE_SUFFIX` (and its weight)
        when it adds tag profiles, its priors' suffixes (and weights), `SPLIT_SUFFIX` when it asks
        splitting questions and `TEMPERATURE_MARK` and T when it is tempered. The same files give the
        same identity, read after read.

        A trained run records it (policy.json's ``ranker_identity``) and is loaded only with the same
        (`check_pinned`). Runs trained before config.json was covered recorded the digest of the
        tensor files alone; `check_pinned` still accepts that form."""
        return self._identity() + self._suffix

    def check_pinned(self, identity: str | None, run: str | Path) -> str | None:
        """Refuse this ranker, the one the trained run `run` recorded (its policy.json entry, resolved in
        the run), unless its file or folder is still there and holds, by content, the ranker the run was
        trained with: its `identity` then is the one the run recorded.

        Args:
            identity: The `identity` the run recorded when it trained (None: a run from before it was
                recorded; then only the file or folder's presence is checked, and a warning logged). An
                artifact's identity of the form from before config.json was covered (its tensor files
                alone) is checked in that form, with a warning: config.json is then not checked.
            run: The run folder (for messages).

        Returns:
            The ranker's `identity` now, where the check computed it (else None).

        Raises:
            RankerChangedError: The file or folder is gone, or holds another ranker (both identities named).
        """
        if self.path is None:  # "popularity", "uniform": built from the catalogue alone
            return None
        if not self.path.exists():
            raise RankerChangedError(
                f"run {run} was trained with ranker {self.name}, and {self.where} no longer exists: "
                "restore it, or train again"
            )
        if identity is None:
            log.warning(
                "run %s records no identity of its ranker %s (trained before it was recorded): not checked "
                "that it is still the ranker the run was trained with",
                run,
                self.name,
            )
            return None
        now = self.identity()
        if now == identity:
            return now
        if self.kind == "artifact" and identity == self._identity(with_config=False) + self._suffix:
            log.warning(
                "run %s records the identity of its ranker %s in the form from before %s was covered: its "
                "tensor files were checked, not its model settings or hold-out",
                run,
                self.name,
                CONFIG_FILE,
            )
            return now
        what = "artifact" if self.kind == "artifact" else "file"
        raise RankerChangedError(
            f"run {run} was trained with ranker {self.name} (identity {identity}); {self.where} now "
            f"holds another {what} (identity {now}): restore it, or train again"
        )

    def _identity(self, with_config: bool = True) -> str:
        """`identity` without the suffixes; `with_config` False: an artifact's in the form from before
        config.json was covered (its tensor files alone)."""
        if self.kind == "transe" and self.path is not None and self.path.is_file():
            return f"transe:{_digest([(self.path.name, self.path.read_bytes())])}"
        if self.kind == "artifact" and self.path is not None and self.path.is_dir():
            tensors = [(file.name, file.read_bytes()) for file in sorted(self.path.glob("*.pt"))]
            pinned = _pinned_config(self.path) if with_config else b""
            if tensors and pinned is not None:
                config = [(CONFIG_FILE, pinned)] if with_config else []
                return f"artifact:{_digest(tensors + config)}"
        plain = RankerSpec(self.kind, self.where)
        return plain.name if self.path is None else f"{self.kind}:{self.path.resolve()}"

    def build(self, catalog: Catalog, data_dir: str | Path | None = None) -> PreferenceRanker:
        """The ranker for `catalog`; relative paths are taken from the working directory (see `resolve`).

        Args:
            catalog: The catalogue the ranker scores.
            data_dir: Real-data directory (for TransE's default file; default $CRS_DATA_DIR).

        Raises:
            CRSError: "pretrain" or "run" (not buildable on their own), TransE's default file asked for
                a dataset other than LastFM, a missing or bad file or artifact.
        """
        ranker = self._build(catalog, data_dir)
        plain = not (self.profile or self.popularity_weight or self.opening_weight)
        if self.questions == "likely" and self.temperature == 1.0 and plain:
            return ranker
        assert isinstance(ranker, PersonaRanker)  # __post_init__: only persona kinds
        if self.profile or self.popularity_weight:
            split = self._pretraining_split()
            if self.profile:
                ranker = ranker.with_profile(ContentProfile.of(catalog, self.profile_weight, *split))
            if self.popularity_weight:
                ranker = ranker.with_item_prior(popularity_prior(catalog, self.popularity_weight, *split))
        if self.opening_weight:
            ranker = ranker.with_item_prior(opening_prior(catalog, self.opening_weight))
        return ranker.with_questions(self.questions, self.question_temperature).with_temperature(
            self.temperature
        )

    def _pretraining_split(self) -> tuple[int, float, str]:
        """The (seed, hold-out fraction, hold-out unit) of the interactions that the tag profiles and the
        popularity prior are built from: those this ranker's pre-training learned from (an artifact
        pre-trained on ``valid`` holds out its own seeded slice), else `crs pretrain`'s default."""
        if self.kind == "artifact":
            from policies.pretrain.artifact import pretraining_holdout  # torch

            holdout = pretraining_holdout(read_artifact_config(self.where))
            if holdout is not None:
                return holdout
        return DEFAULT_SPLIT.seed, DEFAULT_SPLIT.holdout_fraction, DEFAULT_SPLIT.holdout_unit

    def _build(self, catalog: Catalog, data_dir: str | Path | None) -> PreferenceRanker:
        if self.kind == "popularity":
            return PopularityRanker(catalog)
        if self.kind == "uniform":
            return uniform_ranker(catalog)
        if self.kind == "transe":
            if self.path is not None:
                return TransERanker.from_file(self.path, catalog)
            self.check_dataset(catalog.name)
            return TransERanker.from_file(transe_file(data_dir), catalog)
        if self.kind == "pretrain":
            raise CRSError(f"ranker 'pretrain' pre-trains one into a `crs train` run; here use {CHOICES}")
        if self.kind == "run":
            raise CRSError("ranker 'run' is a trained run's own ranker: evaluate the run folder itself")
        if not Path(self.where).exists():
            unknown = _unknown_part(self.where)
            fix = "fix that part" if unknown else f"make one with `crs pretrain --out {self.where}`"
            raise CRSError(
                f"ranker {self.where!r} is neither one of {', '.join(RANKER_NAMES)} nor an existing "
                f"pre-training artifact directory{unknown}; {fix}"
            )
        from policies.pretrain.artifact import load_ranker  # torch is imported only when needed

        return load_ranker(self.where, catalog)


def _weighted_suffix(text: str, suffix: str) -> tuple[str, str]:
    """(head, W) when `text` is head + `suffix`, optionally + ":W" with W a number; ("", "") otherwise."""
    head, mark, tail = text.rpartition(suffix)
    weight_mark, weight = tail[:1], tail[1:]
    if mark and head and (not tail or (weight_mark == WEIGHT_MARK and _is_number(weight))):
        return head, weight
    return "", ""


def _positive_suffix(text: str, suffix: str, what: str, default: float, whole: str) -> tuple[str, float]:
    """(head, W) when `text` is head + `suffix` (W `default`) or head + `suffix` + ":W"; ("", 0) otherwise.

    Raises:
        CRSError: W, `what`, is 0 or below (for a prior's weight 0 would silently mean "no prior"),
            quoting `whole`, the spec `text` is part of.
    """
    head, weight = _weighted_suffix(text, suffix)
    if not head:
        return "", 0.0
    if weight and not float(weight) > 0:
        raise CRSError(f"{what} {weight!r} in {whole!r} must be above 0, e.g. {suffix}{WEIGHT_MARK}{default}")
    return head, float(weight or default)


def _prior_suffix(suffix: str, weight: float, default: float) -> str:
    """`suffix` for a prior of `weight` ("" for 0), with `WEIGHT_MARK` and the weight unless `default`."""
    if not weight:
        return ""
    return suffix if weight == default else suffix + WEIGHT_MARK + _number(weight)


def _number(value: float) -> str:
    """`value` as short as it reads back exactly ("10", "2.5", "0.1234567"): names parse back to a spec."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def _is_number(text: str) -> bool:
    """Whether `text` reads as a float (what may follow `TEMPERATURE_MARK`)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _digest(parts: list[tuple[str, bytes]]) -> str:
    """A short SHA-1 of the (name, content) parts, in the order given."""
    digest = hashlib.sha1()
    for name, content in parts:
        digest.update(name.encode() + b"\0" + content)
    return digest.hexdigest()[:16]


def _pinned_config(artifact: Path) -> bytes | None:
    """The `PINNED_CONFIG_KEYS` parts of an artifact's config.json, as canonical JSON (the same however
    the file orders or spaces them); None when the config cannot be read."""
    try:
        config = read_artifact_config(artifact)
    except CRSError:
        return None
    return json.dumps({key: config[key] for key in PINNED_CONFIG_KEYS}, sort_keys=True).encode()


RUN_RANKER = RankerSpec("run")  # an evaluation of a trained run: the run's own ranker


def build_ranker(spec: str, catalog: Catalog, data_dir: str | Path | None = None) -> PreferenceRanker:
    """Shorthand for ``RankerSpec.parse(spec).build(catalog, data_dir)``."""
    return RankerSpec.parse(spec).build(catalog, data_dir)
