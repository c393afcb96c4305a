"""``Signoff``: where a site developer registers actions, a bot and sites."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from signoff.config import Settings, Site, load_settings, make_site
from signoff.core.actions import (
    DEFAULT_RUN_TIMEOUT,
    DEFAULT_TIMEOUT,
    ActionFunc,
    Registry,
    Team,
    make_action,
)
from signoff.engine.runner import Bot

if TYPE_CHECKING:
    from starlette.applications import Starlette


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

    def action(
        self,
        func: ActionFunc | None = None,
        *,
        kind: str = "write",
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        message: str | None = None,
        when: str | None = None,
        approver: Team | str = "user",
        timeout: float = DEFAULT_TIMEOUT,
        run_timeout: float = DEFAULT_RUN_TIMEOUT,
        confirm: bool = True,
        sensitive: Iterable[str] = (),
        freeform: Iterable[str] = (),
    ) -> Any:
        """Register an async function as an action: ``@app.action(kind="destructive")``."""

        def register(fn: ActionFunc) -> ActionFunc:
            self.registry.add(
                make_action(
                    fn,
                    kind=kind,
                    name=name,
                    title=title,
                    description=description,
                    message=message,
                    when=when,
                    approver=approver,
                    timeout=timeout,
                    run_timeout=run_timeout,
                    confirm=confirm,
                    sensitive=sensitive,
                    freeform=freeform,
                )
            )
            return fn

        return register(func) if func is not None else register

    def site(self, name: str, origins: Iterable[str]) -> None:
        """Allow the widget for ``name`` on pages served from these origins."""
        self.sites[name] = make_site(name, list(origins))

    def use_bot(self, bot: Bot) -> Bot:
        self.bot = bot
        return bot

    def asgi(self, settings: Settings | None = None) -> Starlette:
        """The Starlette application serving this Signoff."""
        from signoff.web.app import build_app

        settings = settings or self.settings or load_settings()
        return build_app(self, settings)
