"""The demo shop: an app of signoff's own (its actions and site), served by ``signoff
demo`` with the rule-based bot, or with a model.

The shop is the app; which bot serves it is chosen here, as any app chooses its own.
"""

from __future__ import annotations

from signoff.app import Signoff
from signoff.config import ConfigError, LLMSettings, Site, make_site
from signoff.demo.agents import BOTS
from signoff.demo.bot import DemoBot
from signoff.demo.shop import DEMO_PROMPT, DemoShop, register_shop

__all__ = ["DemoBot", "DemoShop", "demo_app", "demo_site", "register_shop"]


def demo_app(llm: LLMSettings | None = None, bot: str = "rules") -> Signoff:
    """The demo shop, with the rule-based bot, with the model ``llm`` names, or through
    the adapter ``bot`` names (``pydantic-ai``: signoff.demo.agents)."""
    app = Signoff(bot=DemoBot())
    register_shop(app, DemoShop())
    if llm is not None:
        # Imported here: the rule-based demo does not need the openai package loaded.
        from signoff.bots.llm import DEFAULT_SYSTEM_PROMPT, OpenAIBot

        prompt = f"{DEFAULT_SYSTEM_PROMPT} {DEMO_PROMPT}"
        app.use_bot(OpenAIBot.from_settings(app.registry, llm, default_prompt=prompt))
    elif bot == "pydantic-ai":
        from signoff.demo.agents import pydantic_ai_bot

        app.use_bot(pydantic_ai_bot(app.registry))
    elif bot == "langgraph":
        from signoff.demo.agents import langgraph_bot

        app.use_bot(langgraph_bot(app.registry))
    elif bot == "openai-agents":
        from signoff.demo.agents import openai_agents_bot

        app.use_bot(openai_agents_bot(app.registry))
    elif bot != "rules":
        raise ConfigError(f"--bot {bot}: choose one of {', '.join(BOTS)}")
    return app


def demo_site(host: str, port: int) -> Site:
    """The demo page's own origin at the address it listens on, and local pages on any port.

    Not ``self``, which trusts the request's Host: a page on a name an attacker points at
    127.0.0.1 (DNS rebinding) would send its own name as the Host and pass.
    """
    address = f"[{host}]" if ":" in host else host  # an IPv6 address in a URL
    return make_site(
        "demo",
        [f"http://{address}:{port}", "http://localhost:*", "http://127.0.0.1:*"],
        greeting=DEMO_GREETING,
        suggestions=DEMO_SUGGESTIONS,
        bot_name="Shop assistant",
        page_actions=["cancel_order"],
    )


DEMO_GREETING = (
    "Hi! I look after the demo shop's orders. Anything that changes one waits for your OK "
    "first, and big refunds for a teammate's."
)
DEMO_SUGGESTIONS = ["list orders", "cancel order 1001", "refund 20 on order 1002", "delete spam"]
