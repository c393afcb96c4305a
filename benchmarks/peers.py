"""The servers signoff is compared with, each run as its own process on 127.0.0.1.

- ``ws-echo``: a bare ``websockets`` server that answers every message with the frames
  signoff sends for it (the echo, ``message.start``, the deltas, ``message.end``), doing
  nothing else. Nothing a chat server does can be faster: it is the ceiling.
- ``socketio``: a python-socketio ``AsyncServer`` (ASGI, under uvicorn with the
  settings ``signoff serve`` uses) whose ``message`` handler emits the event
  back to its sender: the same message round trip in a peer framework.

``python -m benchmarks.peers ws-echo --port 9001``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
from collections.abc import Callable
from typing import Any

MAX_FRAME_BYTES = 64 * 1024
ORIGINS = ["http://127.0.0.1"]


def raise_open_files() -> None:
    """Allow as many sockets as the hard limit does: idle runs hold thousands."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop where installed, as uvicorn picks it for signoff and socketio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


# Pieces of a streamed answer: the bench bot (benchmarks/echo_app.py) streams as many.
STREAM_PIECES = 50
STREAM_PREFIX = "stream "


def answer_frames(message: str, seq: int) -> list[str]:
    """The frames signoff sends for a visitor's message to the bench bot: the echo, then
    the bot's answer (a streamed one as a delta per piece), each with its seq."""
    frame = json.loads(message)
    text, client_id = frame.get("text", ""), frame.get("client_id")
    said = {"type": "message", "message_id": "m", "role": "user", "text": text}
    frames: list[dict[str, Any]] = [{**said, "client_id": client_id}]
    frames.append({"type": "message.start", "message_id": "b", "role": "bot"})
    pieces = stream_pieces(text) if text.startswith(STREAM_PREFIX) else [text]
    frames += [{"type": "message.delta", "message_id": "b", "text": p} for p in pieces]
    frames.append({"type": "message.end", "message_id": "b", "text": "".join(pieces)})
    return [json.dumps({**f, "seq": seq + n}) for n, f in enumerate(frames)]


def stream_pieces(text: str) -> list[str]:
    """A streamed answer: the text after ``stream``, cut into ``STREAM_PIECES`` pieces."""
    words = text[len(STREAM_PREFIX) :]
    return [f"{words} {n}. " for n in range(STREAM_PIECES)]


async def ws_echo(port: int) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    async def answer(ws: ServerConnection) -> None:
        seq = 1
        async for message in ws:
            frames = answer_frames(str(message), seq)
            seq += len(frames)
            streamed = len(frames) > 4
            for frame in frames:
                await ws.send(frame)
                if streamed:
                    # Each piece of a streamed answer arrives on its own, as the bench bot's
                    # do: the ceiling pays the same wait between pieces.
                    await asyncio.sleep(0)

    async with serve(
        answer, "127.0.0.1", port, compression=None, max_size=MAX_FRAME_BYTES, backlog=2048
    ) as server:
        await server.serve_forever()


def socketio_app() -> Any:
    import socketio

    sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins=ORIGINS)

    @sio.on("message")
    async def message(sid: str, data: Any) -> None:
        await sio.emit("message", data, to=sid)

    return socketio.ASGIApp(sio)


def serve_socketio(port: int) -> None:
    import uvicorn

    # As signoff.cli.serve configures uvicorn, so the difference is the framework.
    config = uvicorn.Config(
        socketio_app(),
        host="127.0.0.1",
        port=port,
        ws="websockets-sansio",
        ws_max_size=MAX_FRAME_BYTES,
        ws_per_message_deflate=False,
        lifespan="on",
    )
    uvicorn.Server(config).run()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__)
    parser.add_argument("server", choices=["ws-echo", "socketio"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    raise_open_files()
    if args.server == "ws-echo":
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(ws_echo(args.port))
    else:
        serve_socketio(args.port)


if __name__ == "__main__":
    main()
