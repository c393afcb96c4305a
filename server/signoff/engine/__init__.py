"""Runs turns: calls the bot, runs read calls, opens cards, resumes on decisions."""

from signoff.engine.context import ActionContext
from signoff.engine.runner import Engine

__all__ = ["ActionContext", "Engine"]
