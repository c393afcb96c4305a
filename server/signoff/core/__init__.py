"""Pure logic: no sockets, no Redis, no SQL. Everything else depends on this, never the reverse."""
