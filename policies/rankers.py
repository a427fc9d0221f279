"""Choosing a preference ranker by name or path: "transe", "popularity", or a pre-trained artifact."""

from __future__ import annotations

from pathlib import Path

from envs.ranker import PreferenceRanker
from envs.transe import PopularityRanker, TransERanker
from simulators.catalog import Catalog
from simulators.datasets import resolve_data_dir
from simulators.errors import CRSError

RANKER_NAMES = ("transe", "popularity")
TRANSE_FILE = Path("lastfm") / "embeds" / "transe.pkl"


def default_ranker_spec(dataset: str) -> str:
    """UNICORN's TransE ranker on LastFM (the only dataset it ships for), popularity elsewhere."""
    return "transe" if dataset == "lastfm" else "popularity"


def build_ranker(spec: str, catalog: Catalog, data_dir: str | Path | None = None) -> PreferenceRanker:
    """The ranker named by `spec`.

    Args:
        spec: "transe" (UNICORN's LastFM embeddings), "popularity", or the path of a `crs pretrain`
            artifact directory.
        catalog: The catalogue the ranker scores.
        data_dir: Real-data directory (for "transe"; default $CRS_DATA_DIR).

    Raises:
        CRSError: unknown spec, TransE asked for a dataset other than LastFM, or a bad artifact.
    """
    if spec == "popularity":
        return PopularityRanker(catalog)
    if spec == "transe":
        if catalog.name != "lastfm":
            raise CRSError(
                f"TransE embeddings are published for lastfm only, not {catalog.name}; use --ranker "
                f"popularity or a `crs pretrain` artifact"
            )
        return TransERanker.from_file(resolve_data_dir(data_dir) / TRANSE_FILE, catalog)
    path = Path(spec)
    if path.exists():
        from policies.pretrain.artifact import load_ranker  # torch is imported only when needed

        return load_ranker(path, catalog)
    raise CRSError(
        f"--ranker {spec!r} is neither one of {RANKER_NAMES} nor an existing pre-training artifact directory"
    )
