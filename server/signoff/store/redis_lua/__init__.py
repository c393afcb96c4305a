"""The Redis store's Lua scripts, one ``.lua`` file each beside this module, read once.

Each runs atomically in Redis. Numbers go in as Python-formatted strings and are
stored as given: Lua would print them with 14 digits only. Every key a script uses
comes in KEYS and is one session's (or one lane's), so on a Redis Cluster all are in
one slot; the global indexes are written by the caller next to the script. Each file
starts with what its KEYS and ARGV are. ``stale_cards.lua`` is not a script of its own:
it is put in front of the scripts that reach each card of a session.
"""

from importlib.resources import files


def _read(name: str) -> str:
    return files(__name__).joinpath(f"{name}.lua").read_text(encoding="utf-8")


_STALE_CARDS = _read("stale_cards")

# Each script's source by the name RedisStore runs it under.
SCRIPTS: dict[str, str] = {
    "create": _read("create"),
    "touch": _STALE_CARDS + _read("touch"),
    "begin": _STALE_CARDS + _read("begin"),
    "write": _read("write"),
    "renew": _read("renew"),
    "follow": _read("follow"),
    "add_card": _STALE_CARDS + _read("add_card"),
    "transition": _read("transition"),
    "count": _read("count"),
    "end": _STALE_CARDS + _read("end"),
    "reindex": _read("reindex"),
    "outbox_append": _read("outbox_append"),
    "outbox_lease": _read("outbox_lease"),
    "outbox_release": _read("outbox_release"),
    "outbox_done": _read("outbox_done"),
}
