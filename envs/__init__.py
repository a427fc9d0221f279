"""The Gymnasium environment of conversational recommendation (numpy only, no torch)."""

from envs.ranker import DialogueFacts, PreferenceRanker

__all__ = ["DialogueFacts", "PreferenceRanker"]
