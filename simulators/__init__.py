"""The world: catalogues, datasets and simulated users (numpy only)."""

from simulators.catalog import Catalog, CatalogSummary, Interactions, PersonaTruth, Taxonomy
from simulators.errors import CRSError, DatasetError, MissingSplitError
from simulators.goals import GoalSampler, GroupGoals, MultiTargetGoals, PairGoals, PersonaGoals
from simulators.persona_world import make_persona_world
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
    "SingleTargetUser",
    "SlateReaction",
    "Taxonomy",
    "UserModel",
    "make_persona_world",
]
