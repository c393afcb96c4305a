"""Runs turns: calls the bot, runs read calls, opens cards, resumes on decisions."""

from signoff.engine.context import ActionContext
from signoff.engine.engine import Engine
from signoff.engine.turns import Bot

__all__ = ["ActionContext", "Bot", "Engine"]
