"""Runs turns: calls the bot, runs read calls, opens cards, resumes on decisions."""

from signoff.core.bot import Bot
from signoff.engine.context import ActionContext
from signoff.engine.engine import Engine

__all__ = ["ActionContext", "Bot", "Engine"]
