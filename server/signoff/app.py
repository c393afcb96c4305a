"""``Signoff``: where a site developer registers actions, a bot and sites."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar, overload

from signoff.config import ConfigError, Settings, Site, load_settings, make_site
from signoff.core.actions import ActionError, ActionFunc, Registry, make_action
from signoff.core.bot import Bot

if TYPE_CHECKING:
    from starlette.applications import Starlette

# A decorated action keeps its own type, for the type checkers of the code that calls it.
F = TypeVar("F", bound=ActionFunc)


class Signoff:
    """The application: actions, the bot, the sites that embed the widget.

    Settings (secret, store, audit, session TTL) come from the environment or
    a config file unless given here.
    """

    def __init__(self, *, bot: Bot | None = None, settings: Settings | None = None) -> None:
        self.registry = Registry()
        self.bot = bot
        self.settings = settings
        self.sites: dict[str, Site] = {}
        # Entered as the server starts, before it serves, and left as it stops: what the
        # app's actions need running (an MCP server's connection, say).
        self.while_serving: list[Callable[[], AbstractAsyncContextManager[Any]]] = []

    @overload
    def action(self, func: F, /) -> F: ...

    @overload
    def action(self, func: None = None, /, **options: Any) -> Callable[[F], F]: ...

    def action(self, func: F | None = None, /, **options: Any) -> F | Callable[[F], F]:
        """Register an async function as an action: ``@app.action(kind="destructive")``.

        ``options`` are those of :func:`signoff.core.actions.make_action`: kind, name,
        title, description, message, when, approver, timeout, run_timeout, confirm,
        sensitive, freeform, labels, formats, result_message, confirm_label, cancel_label.
        ``kind`` defaults to ``write``: gated unless said otherwise.
        """
        options.setdefault("kind", "write")

        def register(fn: F) -> F:
            try:
                action = make_action(fn, **options)
            except TypeError as exc:  # a misspelt option
                raise ActionError(f"action {fn.__name__}: {exc}") from None
            self.registry.add(action)
            return fn

        return register(func) if func is not None else register

    def site(
        self,
        name: str,
        origins: Iterable[str],
        *,
        greeting: str | None = None,
        suggestions: Iterable[str] = (),
        bot_name: str | None = None,
        bot_avatar: str | None = None,
        page_actions: Iterable[str] = (),
        team_reasons_to_bot: bool = False,
    ) -> None:
        """Allow the widget for ``name`` on pages served from these origins; a new
        conversation there opens with ``greeting`` from ``bot_name`` (pictured by
        ``bot_avatar``, an image URL) and ``suggestions`` to send with one click; the
        pages' own buttons may ask for ``page_actions`` (``Signoff.call``), each through a
        card. With ``team_reasons_to_bot`` the bot hears why a teammate rejected a card."""
        site = make_site(
            name,
            list(origins),
            greeting,
            list(suggestions),
            bot_name,
            list(page_actions),
            bot_avatar=bot_avatar,
        )
        self.sites[name] = replace(site, team_reasons_to_bot=team_reasons_to_bot)

    def use_bot(self, bot: Bot) -> Bot:
        self.bot = bot
        return bot

    def asgi(self, settings: Settings | None = None) -> Starlette:
        """The Starlette application serving this Signoff."""
        from signoff.web.app import build_app

        settings = settings or self.settings or load_settings()
        return build_app(self, settings, self.serving_bot(settings))

    def serving_bot(self, settings: Settings) -> Bot:
        """The bot given to the app, else the model the settings name (``[llm]``)."""
        if self.bot is not None:
            return self.bot
        if settings.llm is not None:
            # Imported here: apps with a bot of their own do not need openai loaded.
            from signoff.bots.llm import OpenAIBot

            return OpenAIBot.from_settings(self.registry, settings.llm)
        raise ConfigError(
            "APP: the Signoff app has no bot; pass bot=, call use_bot() or set SIGNOFF_LLM_BASE_URL"
        )
