"""`RankerSpec`, the one reader of ranker strings: names and policy.json entries round-trip, relative
entries lie in the run, bad ones are named with the choices, and the built rankers are the right ones."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from envs.ranker import DialogueFacts
from policies.baseline_rankers import PopularityRanker, TransERanker, uniform_ranker
from policies.pretrain.ranker import REJECTED_ASPECT_PENALTY, REJECTED_PENALTY, PersonaRanker
from policies.rankers import RUN_RANKER, TRANSE_FILE, RankerSpec, build_ranker, transe_file
from policies.rl.acting import ranker_from_meta
from simulators.errors import CRSError
from tests.envs.conftest import tiny_catalog
from tests.policies.test_memory import random_ranker

# names as typed (--ranker, a training config) and as an evaluation's summary.json shows them
NAMES = [
    "popularity",
    "uniform",
    "uniform+split",
    "transe",
    "pretrain",
    "pretrain+split",
    "runs/pw-ranker+split@4",
    "uniform@2.5",
    "uniform+profile+pop+split",
    "runs/pw-ranker+pop:0.1@4",
    "run",
    "runs/pw-ranker",
    "/abs/pw-ranker/",
    "transe:/x/t.pkl",
]
# entries as a run's policy.json records them (and its summary.json shows them)
ENTRIES = [
    "popularity",
    "uniform",
    "uniform+split",
    "artifact:ranker+split",
    "artifact:ranker+split@4",
    "artifact:ranker+profile+pop+split@4",
    "transe:/data/lastfm/embeds/transe.pkl",
    "artifact:ranker",
    "artifact:/abs/pw-ranker",
]


@pytest.mark.parametrize("name", NAMES)
def test_every_name_round_trips(name: str) -> None:
    spec = RankerSpec.parse(name)
    assert spec.name == name
    assert RankerSpec.parse(spec.name) == spec


@pytest.mark.parametrize("entry", ENTRIES)
def test_every_policy_json_entry_round_trips(entry: str) -> None:
    spec = RankerSpec.from_entry(entry, "policy.json")
    assert spec.entry == entry
    assert RankerSpec.parse(entry) == spec


def test_the_two_formats_of_an_artifact_are_one_ranker() -> None:
    assert (
        RankerSpec.parse("runs/pw")
        == RankerSpec.parse("artifact:runs/pw")
        == RankerSpec("artifact", "runs/pw")
    )
    assert RankerSpec.parse("runs/pw").entry == "artifact:runs/pw"
    assert RankerSpec.parse("artifact:runs/pw").name == "runs/pw"


@pytest.mark.parametrize(
    ("text", "mark"),
    [
        ("uniform+profile:0.1+profile:5", "+profile"),
        ("uniform+pop+pop:2", "+pop"),
        ("uniform+open+open", "+open"),
        ("uniform+split+split:0.1", "+split"),
        ("uniform@0.1@0.2", "@"),
    ],
)
def test_a_ranker_part_given_twice_is_refused_not_overridden(text: str, mark: str) -> None:
    with pytest.raises(CRSError, match=f"gives {re.escape(mark)} twice"):
        RankerSpec.parse(text)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("uniform+pop:-1+split", "popularity weight '-1' in 'uniform+pop:-1+split' must be above 0"),
        ("uniform+open:0@0.5", "opening weight '0' in 'uniform+open:0@0.5' must be above 0"),
        ("uniform+pop+pop+split", "ranker 'uniform+pop+pop+split' gives +pop twice"),
        ("artifact:+profile", "ranker 'artifact:+profile' names no artifact file or folder"),
    ],
)
def test_a_fault_in_one_part_of_a_ranker_quotes_all_of_it(text: str, said: str) -> None:
    """The error quotes the spec as written, not the part left once later suffixes were read off (guards
    against 'in \'uniform+pop:-1\'' for a spec the user wrote with +split after it)."""
    with pytest.raises(CRSError, match=re.escape(said)):
        RankerSpec.parse(text)


@pytest.mark.parametrize(("text", "part"), [("uniform+bogus", "+bogus"), ("uniform+profile+pop+x:3", "+x")])
def test_an_unknown_ranker_part_is_named(text: str, part: str) -> None:
    with pytest.raises(CRSError, match=f"{re.escape(part)} is not one of"):
        build_ranker(text, tiny_catalog())


def test_the_transe_file_is_found_from_the_data_folder_or_the_lastfm_folder(tmp_path: Path) -> None:
    (tmp_path / "lastfm" / "embeds").mkdir(parents=True)
    expected = tmp_path / "lastfm" / "embeds" / "transe.pkl"
    assert transe_file(tmp_path) == expected
    assert transe_file(tmp_path / "lastfm") == expected  # the folder the datasets' loaders also accept


def test_what_a_run_records(tmp_path: Path) -> None:
    assert RankerSpec.parse("popularity").for_run().entry == "popularity"
    assert RankerSpec.parse("pretrain").for_run().entry == "artifact:ranker"
    transe = RankerSpec.parse("transe").for_run(tmp_path).entry
    assert transe == f"transe:{(tmp_path / TRANSE_FILE).resolve()}"
    relative = RankerSpec.parse("some/artifact").for_run().entry
    assert relative == f"artifact:{Path('some/artifact').resolve()}"
    with pytest.raises(CRSError, match="'run'"):
        RUN_RANKER.for_run()
    with pytest.raises(ValueError, match="for_run"):
        _ = RankerSpec.parse("transe").entry


def test_relative_entries_resolve_against_the_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert RankerSpec.parse("artifact:ranker").resolve(run) == RankerSpec("artifact", str(run / "ranker"))
    assert RankerSpec.parse("transe:e/t.pkl").resolve(run).path == run / "e" / "t.pkl"
    absolute = RankerSpec.parse("artifact:/abs/pw")
    assert absolute.resolve(run) == absolute
    assert RankerSpec.parse("popularity").resolve(run) == RankerSpec("popularity")


@pytest.mark.parametrize("text", ["", " ", "transe:", "artifact:"])
def test_a_bad_spec_names_itself_and_the_choices(text: str) -> None:
    with pytest.raises(CRSError) as info:
        RankerSpec.parse(text)
    assert repr(text) in str(info.value) and "popularity" in str(info.value)


def test_an_unknown_name_is_refused_when_built_naming_it_and_the_choices() -> None:
    with pytest.raises(
        CRSError,
        match=r"'nope' is neither one of transe, popularity, uniform nor .*; make one with `crs pretrain "
        r"--out nope`",
    ):
        RankerSpec.parse("nope").build(tiny_catalog())
    for keyword in ("pretrain", "run"):
        with pytest.raises(CRSError, match=f"'{keyword}'"):
            RankerSpec.parse(keyword).build(tiny_catalog())


@pytest.mark.parametrize(
    ("text", "part"),
    [
        ("uniform+pop:abc", "(+pop:abc: 'abc' is not a number, e.g. +pop:0.5)"),
        ("uniform+profile:x1@2", "(+profile:x1: 'x1' is not a number, e.g. +profile:0.5)"),
        ("uniform+spilt", "(+spilt is not one of +profile, +pop, +open, +split)"),
    ],
)
def test_a_mistyped_part_is_named_with_its_fix_not_taken_for_a_missing_artifact(text: str, part: str) -> None:
    """A spec that does not parse is read as an artifact's path: when no such folder exists, the part
    that made it one is named, and `crs pretrain --out <spec>` is not suggested."""
    with pytest.raises(CRSError) as info:
        RankerSpec.parse(text).build(tiny_catalog())
    assert f"pre-training artifact directory {part}; fix that part" in str(info.value)
    assert "crs pretrain" not in str(info.value)


@pytest.mark.parametrize("entry", ["transe", "pretrain", "run", "/abs/pw", "foo:bar", ""])
def test_an_unknown_policy_json_entry_names_the_run_and_the_entry_choices(entry: str) -> None:
    with pytest.raises(CRSError) as info:
        ranker_from_meta(entry, tiny_catalog(), Path("runs/x"), None)
    message = str(info.value)
    assert "runs/x" in message and repr(entry) in message and "artifact:<dir>" in message


def test_transe_on_another_dataset_names_the_fix() -> None:
    with pytest.raises(CRSError, match="lastfm only"):
        RankerSpec.parse("transe").build(tiny_catalog())


def test_builds_the_named_ranker(tmp_path: Path) -> None:
    catalog = tiny_catalog()
    assert isinstance(build_ranker("popularity", catalog), PopularityRanker)
    assert isinstance(ranker_from_meta("popularity", catalog, tmp_path, None), PopularityRanker)
    embeds = tmp_path / "embeds"
    embeds.mkdir()
    data = {"ui_emb": np.ones((7, 3)), "feature_emb": np.ones((4, 3))}  # 1 user + 6 items, 4 aspects
    (embeds / "t.pkl").write_bytes(pickle.dumps(data))
    ranker = ranker_from_meta("transe:embeds/t.pkl", catalog, tmp_path, None)  # in the run
    assert isinstance(ranker, TransERanker) and ranker.item_emb.shape == (6, 3)


def test_default_rankers() -> None:
    assert RankerSpec.default("lastfm") == RankerSpec("transe")
    assert RankerSpec.default("yelp_star").name == "popularity"


def test_uniform_ranks_by_the_dialogue_alone() -> None:
    """No preferences: every item ties until the dialogue speaks; a rejected aspect costs its holders the
    penalty; a question scores the log share of the consistent items holding the aspect."""
    catalog = tiny_catalog()
    ranker = build_ranker("uniform", catalog)
    assert isinstance(ranker, PersonaRanker) and ranker.personas_per_user == 1
    items = np.arange(catalog.n_items)
    empty = np.zeros(0, dtype=np.int64)
    none = DialogueFacts(0, empty, empty, empty)
    assert np.ptp(ranker.item_scores(none, items)) == 0.0
    rejected = 0
    holders = catalog.item_aspects[:, rejected].toarray().ravel() > 0
    assert 0 < holders.sum() < catalog.n_items
    facts = DialogueFacts(0, empty, np.array([rejected]), empty)
    scores = ranker.item_scores(facts, items)
    assert np.allclose(scores[~holders].max() - scores[holders], REJECTED_ASPECT_PENALTY)
    shares = np.asarray(catalog.item_aspects.sum(axis=0)).ravel() / catalog.n_items
    aspects = np.flatnonzero(shares)
    assert np.allclose(ranker.aspect_scores(none, aspects), np.log(shares[aspects]), atol=1e-5)


def test_split_questions_halve_the_consistent_items() -> None:
    """`uniform+split` scores items as `uniform` does, but scores a question by the binary entropy of the
    share of consistent items holding it, so a question held by half of them beats a common one."""
    catalog = tiny_catalog()
    likely, split = build_ranker("uniform", catalog), build_ranker("uniform+split", catalog)
    assert isinstance(split, PersonaRanker) and split.questions == "split" and likely.questions == "likely"
    items = np.arange(catalog.n_items)
    empty = np.zeros(0, dtype=np.int64)
    none = DialogueFacts(0, empty, empty, empty)
    assert np.array_equal(split.item_scores(none, items), likely.item_scores(none, items))
    shares = np.asarray(catalog.item_aspects.sum(axis=0)).ravel() / catalog.n_items
    aspects = np.flatnonzero((shares > 0) & (shares < 1))
    p = shares[aspects]
    entropy = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    assert np.allclose(split.aspect_scores(none, aspects), entropy, atol=1e-5)
    # the two rules disagree on this catalogue, and a view never reads the other's cached scores
    assert np.argmax(likely.aspect_scores(none, aspects)) != np.argmax(split.aspect_scores(none, aspects))
    assert np.allclose(likely.with_questions("split").aspect_scores(none, aspects), entropy, atol=1e-5)
    assert np.allclose(likely.aspect_scores(none, aspects), np.log(p), atol=1e-5)


def test_a_question_temperature_splits_the_sharpened_belief_and_keeps_the_slates() -> None:
    """`+split:T` scores a question by the binary entropy of the mass softmax(item scores / T) puts on its
    holders; the item scores, so the slates, are those of `+split`. On the tiny catalogue the profile
    prefers item 2, then items 0 and 5: at T 1 aspects 1, 2 and 3 split the items alike; at T 0.01 aspects
    1 and 3, which tell item 2 from one of its rivals, beat aspect 2, held by the unlikely items only."""
    catalog = tiny_catalog()
    items, aspects = np.arange(catalog.n_items), np.arange(4)
    empty = np.zeros(0, dtype=np.int64)
    none = DialogueFacts(0, empty, empty, empty)
    plain = build_ranker("uniform+profile+split", catalog)
    holds = catalog.item_aspects.toarray().astype(float)
    scores = plain.item_scores(none, items)
    for temperature in (1.0, 0.05, 0.01):
        sharp = build_ranker(f"uniform+profile+split:{temperature:g}", catalog)
        assert np.array_equal(sharp.item_scores(none, items), scores)
        belief = np.exp(scores / temperature) / np.exp(scores / temperature).sum()
        m = belief @ holds
        entropy = -(m * np.log(m) + (1 - m) * np.log(1 - m))
        assert np.allclose(sharp.aspect_scores(none, aspects), entropy, atol=1e-5)
    sharp = build_ranker("uniform+profile+split:0.01", catalog)
    flat, sharpened = plain.aspect_scores(none, aspects), sharp.aspect_scores(none, aspects)
    assert np.allclose(flat[1:], np.log(2), atol=1e-3)  # three of six items, nearly half the mass, each
    assert sharpened[[1, 3]].min() > 5 * sharpened[2]
    spec = RankerSpec.parse("uniform+profile+pop+split:0.03")
    assert spec.question_temperature == 0.03 and spec.name == "uniform+profile+pop+split:0.03"
    assert RankerSpec.parse(spec.entry) == spec
    assert spec.identity() != RankerSpec.parse("uniform+profile+pop+split").identity()
    for text in ("uniform+split:0", "uniform+split:-1", "uniform+split:inf"):
        with pytest.raises(CRSError, match="question temperature"):
            RankerSpec.parse(text)
    with pytest.raises(CRSError, match="weighs splitting questions only"):
        plain.with_questions("likely", 0.5)


def test_split_names_round_trip_and_only_persona_rankers_take_it(tmp_path: Path) -> None:
    spec = RankerSpec.parse("runs/pw-ranker+split")
    assert spec == RankerSpec("artifact", "runs/pw-ranker", "split")
    assert spec.name == "runs/pw-ranker+split" and spec.entry == "artifact:runs/pw-ranker+split"
    assert RankerSpec.parse("pretrain+split").for_run() == RankerSpec("artifact", "ranker", "split")
    assert spec.resolve(tmp_path) == RankerSpec("artifact", str(tmp_path / "runs/pw-ranker"), "split")
    assert RankerSpec.parse("uniform+split").identity() != RankerSpec.parse("uniform").identity()
    for text in ("popularity+split", "transe+split", "run+split"):
        with pytest.raises(CRSError, match="only a persona ranker"):
            RankerSpec.parse(text)
    with pytest.raises(CRSError, match="questions must be one of"):
        uniform_ranker(tiny_catalog()).with_questions("cheapest")


def test_temperature_names_round_trip_and_only_persona_rankers_take_it() -> None:
    spec = RankerSpec.parse("runs/pw-ranker+split@4")
    assert spec == RankerSpec("artifact", "runs/pw-ranker", "split", 4.0)
    assert RankerSpec.parse("runs/pw-ranker@4+split") == spec  # either order, one canonical name
    assert spec.name == "runs/pw-ranker+split@4" and spec.entry == "artifact:runs/pw-ranker+split@4"
    assert RankerSpec.parse("pretrain@4").for_run() == RankerSpec("artifact", "ranker", temperature=4.0)
    assert RankerSpec.parse("runs/a@b") == RankerSpec("artifact", "runs/a@b")  # not a number: a path
    assert RankerSpec.parse("uniform@2").identity() != RankerSpec.parse("uniform").identity()
    precise = RankerSpec.parse("uniform+profile:0.1234567@2.0000001")  # beyond 6 significant digits
    assert RankerSpec.parse(precise.name) == precise and RankerSpec.parse(precise.entry) == precise
    assert precise.identity() != RankerSpec.parse("uniform+profile:0.123457@2").identity()
    for text in ("popularity@2", "transe@2"):
        with pytest.raises(CRSError, match="no learned preferences"):
            RankerSpec.parse(text)
    for text in ("uniform@0", "uniform@-1", "uniform@nan", "uniform@inf"):
        with pytest.raises(CRSError, match="finite number above 0"):
            RankerSpec.parse(text)
    with pytest.raises(CRSError, match="finite number above 0"):
        random_ranker().with_temperature(0.0)


def test_tempering_divides_the_preferences_and_keeps_the_rules() -> None:
    """At T the scores are the plain ranker's preference part over T plus the same rejection rules, so
    the items a rejected aspect pushes down stay down, and the softmax over the rest flattens."""
    plain = random_ranker()
    tempered = plain.with_temperature(4.0)
    items = np.arange(plain.n_items)
    empty = np.zeros(0, dtype=np.int64)
    none = DialogueFacts(1, empty, empty, empty)
    assert np.allclose(tempered.item_scores(none, items), plain.item_scores(none, items) / 4.0)
    rejected = np.array([0])
    holders = plain.item_aspects[:, 0].toarray().ravel() > 0
    assert 0 < holders.sum() < plain.n_items
    facts = DialogueFacts(1, np.array([1]), rejected, np.array([5]))
    rules = -REJECTED_ASPECT_PENALTY * holders
    rules[5] -= REJECTED_PENALTY
    expected = (plain.item_scores(facts, items) - rules) / 4.0 + rules
    assert np.allclose(tempered.item_scores(facts, items), expected)
    # the shared score cache keeps each temperature apart, and T 1 is the ranker as trained
    assert not np.allclose(plain.item_scores(facts, items), tempered.item_scores(facts, items))
    assert np.array_equal(
        plain.with_temperature(1.0).item_scores(facts, items), plain.item_scores(facts, items)
    )
    # questions read the flatter softmax: the split entropy of the consistent mass changes with T
    aspects = np.arange(2, plain.n_aspects)
    split = plain.with_questions("split")
    assert not np.allclose(
        split.aspect_scores(facts, aspects), split.with_temperature(4.0).aspect_scores(facts, aspects)
    )


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.crs.tiny_runs import pretrain_tiny

    return pretrain_tiny(tmp_path_factory.mktemp("ranker-spec") / "art")


def test_an_artifact_at_a_temperature_builds_the_tempered_ranker(artifact: Path) -> None:
    from simulators.datasets import load_catalog

    catalog = load_catalog("persona_world")
    plain = RankerSpec.parse(str(artifact)).build(catalog)
    tempered = RankerSpec.parse(f"{artifact}@4").build(catalog)
    assert isinstance(plain, PersonaRanker) and isinstance(tempered, PersonaRanker)
    items = np.arange(catalog.n_items)
    empty = np.zeros(0, dtype=np.int64)
    facts = DialogueFacts(3, np.array([1]), np.array([2]), np.array([5]))
    for seen in (DialogueFacts(3, empty, empty, empty), facts):
        scores = tempered.item_scores(seen, items)
        assert np.allclose(scores, plain.with_temperature(4.0).item_scores(seen, items))
        assert not np.allclose(scores, plain.item_scores(seen, items))


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "uniform", "profile_weight": 2.0},  # a profile weight without the profile
        {"kind": "uniform", "question_temperature": 0.5},  # a question temperature without splitting
        {"kind": "popularity", "where": "x.pkl"},  # a data-free ranker reading a file
        {"kind": "run", "where": "runs/x"},
    ],
)
def test_a_spec_whose_name_could_not_say_it_is_refused(fields: dict[str, object]) -> None:
    """Guards against a spec made in Python with a part its name cannot carry ("uniform:2" for a
    profile weight without +profile): its name would not parse back to it, nor build what it says."""
    with pytest.raises(ValueError):
        RankerSpec(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("weight", [0.1234567, 1 / 3, 2.5])
def test_odd_weights_and_temperatures_keep_every_digit_in_the_name(weight: float) -> None:
    """Guards against a name that rounds a weight or temperature (``%g`` keeps 6 digits): the recorded
    entry must parse back to the very ranker that was trained."""
    spec = RankerSpec(
        "artifact",
        "runs/x",
        questions="split",
        temperature=weight,
        profile=True,
        profile_weight=weight,
        popularity_weight=weight,
        opening_weight=weight,
        question_temperature=weight,
    )
    again = RankerSpec.parse(spec.name)
    assert again == spec
    assert RankerSpec.from_entry(spec.entry, "policy.json") == spec


def test_an_artifacts_identity_follows_what_it_pins_not_how_its_config_is_written(tmp_path: Path) -> None:
    """Guards against an identity that changes when config.json is rewritten with its keys in another
    order (a run would then refuse its own ranker), or that misses a change of the model or the seed."""
    artifact = tmp_path / "art"
    artifact.mkdir()
    (artifact / "weights.pt").write_bytes(b"tensor bytes")
    model = {"dim": 8, "personas": 2, "aspect_mode": "attention", "layers": 1}
    config = {
        "kind": "persona_pretrain",
        "artifact_version": 1,
        "model": model,
        "split": {"name": "train"},
        "seed": 0,
        "took_s": 1.5,
    }

    def identity_of(written: dict[str, object], **dump: object) -> str:
        (artifact / "config.json").write_text(json.dumps(written, **dump))  # type: ignore[arg-type]
        return RankerSpec("artifact", str(artifact)).identity()

    first = identity_of(config)
    assert first.startswith("artifact:")
    reordered = {
        "took_s": 9.0,
        "seed": 0,
        "split": {"name": "train"},
        "model": dict(reversed(list(model.items()))),
        "artifact_version": 1,
        "kind": "persona_pretrain",
    }
    assert identity_of(reordered, indent=2) == first  # other order, spacing and timings: the same
    assert identity_of({**config, "seed": 1}) != first
    assert identity_of({**config, "model": {**model, "dim": 16}}) != first
    identity_of(config)
    (artifact / "weights.pt").write_bytes(b"other tensor bytes")
    assert RankerSpec("artifact", str(artifact)).identity() != first
