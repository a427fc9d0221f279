"""A tiny `crs pretrain` artifact and a loadable run folder of the default persona world, shared by the
CLI tests of the persona memory (chat, `crs eval --sessions`, sweeps of sessions)."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from crs.cli import app
from envs.registry import make_env
from envs.setting import Setting
from policies.rankers import RankerSpec
from simulators.catalog import Catalog

PRETRAIN = ["pretrain", "--epochs", "1", "--dim", "8", "--layers", "0", "--prototypes", "3"]


def pretrain_tiny(out: Path, *extra: str) -> Path:
    """`crs pretrain` of the persona world (3 personas per user) into `out`, in about a second (`extra`:
    more options)."""
    result = CliRunner().invoke(app, [*PRETRAIN, *extra, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def untrained_run(run: Path, artifact: Path, catalog: Catalog, setting: Setting | None = None) -> Path:
    """A run folder as `crs train` writes one: `artifact` as its ranker/ and an untrained but loadable
    model whose encoder's priors come from it, learned in `setting` (None: the dataset's default)."""
    from policies.rl import RLConfig, build_model, make_vec_env  # torch only where a test needs it
    from policies.rl.run_files import BEST_MODEL, PolicyMeta, atomic_save

    shutil.copytree(artifact, run / "ranker")
    ranker = RankerSpec.parse(str(run / "ranker")).build(catalog)
    config = RLConfig(n_envs=1, n_steps=32, batch_size=32, hidden=16)
    env = make_env(catalog=catalog, split="valid", setting=setting)
    model = build_model(make_vec_env(lambda: env, ranker, config, seed=0), ranker, config, seed=0)
    atomic_save(model, run / BEST_MODEL)
    sizes = (catalog.n_users, catalog.n_items, catalog.n_aspects)
    options = {"user": "auto", "setting": env.setting}
    PolicyMeta(catalog.name, "artifact:ranker", config, sizes, options).write(run)
    return run
