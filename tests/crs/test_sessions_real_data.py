"""`crs eval --sessions` on real data (#16): LastFM* users come back for sessions made of their own
held-out items, grouped by the pre-trained ranker's personas; memory modes play the same sessions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from crs.app.run_folder import EvalSummary
from crs.cli import app
from crs.report.inputs import load_inputs
from policies.rankers import RankerSpec
from simulators.catalog import Catalog
from simulators.datasets import DatasetSpec
from simulators.returning import users_with_held_out

runner = CliRunner()
SESSIONS = 3
USERS = 8


@pytest.fixture(scope="module")
def data(real_data_dir: Path) -> str:
    return str(real_data_dir)


@pytest.fixture(scope="module")
def catalog(data: str) -> Catalog:
    return DatasetSpec("lastfm_star", data).load()


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory, data: str) -> Path:
    """A one-epoch LastFM* persona ranker (about 15 s)."""
    out = tmp_path_factory.mktemp("lastfm") / "ranker"
    args = [
        "pretrain",
        "-d",
        "lastfm_star",
        "--data-dir",
        data,
        "--epochs",
        "1",
        "--dim",
        "8",
        "--layers",
        "0",
    ]
    args += ["--prototypes", "3", "--batch-size", "8192", "--persona-init", "random", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


def sessions(tmp_path: Path, data: str, artifact: Path, memory: str, regime: str = "switch") -> Path:
    out = tmp_path / memory
    args = ["eval", "-p", "ask-2", "-d", "lastfm_star", "--data-dir", data, "--ranker", str(artifact)]
    args += ["--sessions", str(SESSIONS), "--regime", regime, "--memory", memory, "-n", str(USERS)]
    result = runner.invoke(app, [*args, "--seed", "4", "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def items_of(catalog: Catalog, split: str, user: int) -> set[int]:
    interactions = catalog.split(split)
    return set(interactions.items[interactions.users == user].tolist())


@pytest.mark.slow  # a LastFM* pre-training and two session evaluations
def test_lastfm_star_sessions_are_held_out_items_of_the_rankers_personas(
    tmp_path: Path, data: str, artifact: Path, catalog: Catalog
) -> None:
    frozen, update = (sessions(tmp_path, data, artifact, memory) for memory in ("frozen", "update"))
    a, b = EvalSummary.read(frozen), EvalSummary.read(update)
    assert a.dataset == "lastfm_star" and a.user == "single" and a.setting == "binary"
    assert a.episodes == USERS * SESSIONS and a.sessions is not None and a.sessions.regime == "switch"
    assert a.conversations == b.conversations  # the modes play the same sessions (paired)
    ranker = RankerSpec.parse(str(artifact)).build(catalog)
    lines = {
        m: [json.loads(x) for x in (o / "episodes.jsonl").read_text().splitlines()]
        for m, o in (("frozen", frozen), ("update", update))
    }
    for line in lines["frozen"]:
        user, (target,) = line["user"], line["targets"]
        assert target in items_of(catalog, "test", user)
        assert target not in items_of(catalog, "train", user) | items_of(catalog, "valid", user)
        assert line["active_slot"] == int(ranker.persona_of(user, np.array([target]))[0])
        assert line["believed"] == int(np.argmax(ranker.log_prior[user]))  # frozen: the pre-trained prior
        change = line["change_session"]
        assert 1 <= change < SESSIONS
    for first, second in zip(lines["frozen"], lines["update"], strict=True):
        assert (first["user"], first["targets"]) == (second["user"], second["targets"])
    assert any(x["believed"] != y["believed"] for x, y in zip(lines["frozen"], lines["update"], strict=True))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("regime", "message"),
    [
        (
            "drift",
            "--regime drift needs the persona world's generative truth; on real data use stable or switch",
        )
    ],
)
def test_real_data_refuses_regimes_it_cannot_build(
    tmp_path: Path, data: str, artifact: Path, regime: str, message: str
) -> None:
    args = ["eval", "-p", "ask-2", "-d", "lastfm_star", "--data-dir", data, "--ranker", str(artifact)]
    result = runner.invoke(app, [*args, "--sessions", "3", "--regime", regime, "--memory", "update"])
    flat = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2 and message in flat, result.output


@pytest.mark.slow
def test_the_note_names_why_fewer_users_play_a_switch(
    tmp_path: Path, data: str, artifact: Path, catalog: Catalog
) -> None:
    out = tmp_path / "many"
    args = ["eval", "-p", "ask-2", "-d", "lastfm_star", "--data-dir", data, "--ranker", str(artifact)]
    args += ["--sessions", "10", "--regime", "switch", "--memory", "frozen", "-n", "5000", "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = EvalSummary.read(out)
    played, with_items = summary.episodes // 10, users_with_held_out(catalog, 10)
    assert 0 < played < with_items  # some users' items fit no change session
    (note,) = [n for n in summary.notes if "returning users were asked for" in n]
    assert f"only {played} users have 10 held-out 'test' items and a feasible switch" in note
    assert f"({with_items} have 10 items; for the other {with_items - played}," in note
    # real data has no world seed (it recorded 0, and a report then named "other persona world (world
    # seed 0)" beside plain evaluations); a report reads those older files without one too
    assert summary.world_seed is None
    recorded = json.loads((out / "summary.json").read_text())
    (out / "summary.json").write_text(json.dumps({**recorded, "world_seed": 0}))
    (run,) = load_inputs([out]).evals
    assert run.world_seed is None
