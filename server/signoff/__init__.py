"""signoff: a realtime chat widget server with confirmation cards."""

# First: modules the imports below load read it (signoff.metrics).
__version__ = "0.1.0"

from signoff.app import Signoff
from signoff.config import Settings, load_settings
from signoff.core.actions import team
from signoff.core.bot import BotContext
from signoff.core.conversation import Text, ToolCall
from signoff.core.tokens import sign_user_token
from signoff.engine.context import ActionContext
from signoff.web.mounting import mounted_lifespan

__all__ = [
    "ActionContext",
    "BotContext",
    "Settings",
    "Signoff",
    "Text",
    "ToolCall",
    "load_settings",
    "mounted_lifespan",
    "sign_user_token",
    "team",
]
