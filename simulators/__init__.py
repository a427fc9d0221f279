"""The world: catalogues, datasets and simulated users (numpy only)."""

from simulators.catalog import Catalog, CatalogSummary, Interactions, PersonaTruth, Taxonomy
from simulators.errors import CRSError, DatasetError, MissingSplitError
from simulators.goals import GoalSampler, PairGoals
from simulators.users import Goal, SingleTargetUser, SlateReaction, UserModel

__all__ = [
    "CRSError",
    "Catalog",
    "CatalogSummary",
    "DatasetError",
    "Goal",
    "GoalSampler",
    "Interactions",
    "MissingSplitError",
    "PairGoals",
    "PersonaTruth",
    "SingleTargetUser",
    "SlateReaction",
    "Taxonomy",
    "UserModel",
]
