"""Widgets turned away for a setup mistake, said in the server's log with the fix.

A page on an origin no site lists, or naming a site that is not configured, fails the
same way on every page view: the site owner needs one line naming the cause, not one per
visitor. Each cause is said at once, then at most once a minute with a count.
"""

from __future__ import annotations

import logging

from signoff.logs import Repeated

log = logging.getLogger("signoff.web")

ORIGINS_DOC = "docs/embedding.md#allowed-origins"
# Origins and site names come from the page (or from anyone): cut before they are logged.
LOGGED_CHARS = 100


def shown(value: str | None) -> str:
    return repr((value or "")[:LOGGED_CHARS])


class Refusals:
    def __init__(self) -> None:
        self._unknown_origin = Repeated(log)
        self._unknown_site = Repeated(log)
        self._origin_not_for_site = Repeated(log)

    def unknown_origin(self, origin: str | None) -> None:
        self._unknown_origin.warning(
            "refused a widget on origin %s: no site lists it; add it to the origins of the "
            "page's site ([sites.NAME] origins = [...] in the config file; %s)",
            shown(origin),
            ORIGINS_DOC,
        )

    def unknown_site(self, site: str, origin: str | None, known: list[str]) -> None:
        self._unknown_site.warning(
            "refused a widget on origin %s: it names site %s, which is not configured; "
            "the page's data-site must be one of %s",
            shown(origin),
            shown(site),
            ", ".join(sorted(known)) or "(no sites configured)",
        )

    def origin_not_for_site(self, site: str, origin: str | None) -> None:
        self._origin_not_for_site.warning(
            "refused a widget of site %s on origin %s: the site does not list this origin; "
            "add it to [sites.%s] origins (%s)",
            shown(site),
            shown(origin),
            site,
            ORIGINS_DOC,
        )
