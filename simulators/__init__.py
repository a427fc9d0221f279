"""The world: catalogues, datasets and simulated users (numpy only)."""

from simulators.catalog import Catalog, CatalogSummary, Interactions, PersonaTruth, Taxonomy
from simulators.errors import CRSError, DatasetError, MissingSplitError
from simulators.goals import GoalSampler, GroupGoals, MultiTargetGoals, PairGoals, PersonaGoals
from simulators.persona_world import WORLD_USER, WorldUser, make_persona_world
from simulators.returning import REGIMES, Regime, ReturningSequence, returning_sequences
from simulators.users import (
    Goal,
    MCMIPLUser,
    MultiInterestUser,
    PersonaUser,
    SingleTargetUser,
    SlateReaction,
    UserModel,
)

__all__ = [
    "REGIMES",
    "WORLD_USER",
    "CRSError",
    "Catalog",
    "CatalogSummary",
    "DatasetError",
    "Goal",
    "GoalSampler",
    "GroupGoals",
    "Interactions",
    "MCMIPLUser",
    "MissingSplitError",
    "MultiInterestUser",
    "MultiTargetGoals",
    "PairGoals",
    "PersonaGoals",
    "PersonaTruth",
    "PersonaUser",
    "Regime",
    "ReturningSequence",
    "SingleTargetUser",
    "SlateReaction",
    "Taxonomy",
    "UserModel",
    "WorldUser",
    "make_persona_world",
    "returning_sequences",
]
