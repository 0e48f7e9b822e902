"""`moodstream mark "session 12 start"`: put a session mark into the running daemon's stream.

The mark goes over the WebSocket protocol (a ``mark`` request, with the token like ``watch``), so
it works against the systemd service and over SSH; the daemon publishes it as a ``mark`` status
event to every sink: the history, the JSON lines and every client (the web page shows it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from streamer.commands.client import DEFAULT_URL, FATAL_STATUS, TOKEN_ENV, WatchError, normalise_url
from streamer.sinks import protocol

REPLY_TIMEOUT_S = 10.0


class MarkError(RuntimeError):
    """The mark did not reach the daemon (``fatal``: retrying cannot help)."""

    def __init__(self, message: str, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", help='the mark, e.g. "session 12 start" (then "session 12 end")')
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the daemon's WebSocket (default {DEFAULT_URL})")
    parser.add_argument(
        "--token", default=os.environ.get(TOKEN_ENV) or None, help=f"the daemon's token (default: ${TOKEN_ENV})"
    )


def main(args: argparse.Namespace) -> int:
    try:
        reply = asyncio.run(send_mark(normalise_url(args.url), args.token, args.text))
    except WatchError as exc:
        print(f"moodstream mark: {exc}", file=sys.stderr)
        return 2
    except MarkError as exc:
        print(f"moodstream mark: {exc}", file=sys.stderr)
        return 2 if exc.fatal else 1
    print(f"marked: {reply['text']}")
    return 0


async def send_mark(url: str, token: str | None, text: str) -> protocol.Message:
    """Send one mark and wait for the daemon's ``marked`` reply (events in between are skipped)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with connect(url, additional_headers=headers, open_timeout=5, max_size=2**22) as ws:
            await ws.send(json.dumps({"type": "mark", "text": text, "id": "mark"}))
            async with asyncio.timeout(REPLY_TIMEOUT_S):
                async for frame in ws:
                    message = protocol.decode(frame)
                    if message.get("id") != "mark":
                        continue
                    if message["type"] == "error":
                        raise MarkError(f"the daemon refused the mark: {message['message']}", fatal=True)
                    return message
            raise MarkError(f"{url}: the connection closed before the daemon answered")
    except InvalidStatus as exc:
        status = exc.response.status_code
        reason = FATAL_STATUS.get(status, "refused")
        raise MarkError(f"{url}: HTTP {status}: {reason}", fatal=status in FATAL_STATUS) from None
    except InvalidURI as exc:
        raise MarkError(f"not a WebSocket URL: {exc}", fatal=True) from None
    except TimeoutError:
        raise MarkError(f"{url}: no answer from the daemon within {REPLY_TIMEOUT_S:g} s") from None
    except ConnectionClosed as exc:
        raise MarkError(f"{url}: the connection closed before the daemon answered ({exc})") from None
    except (OSError, InvalidHandshake) as exc:
        raise MarkError(f"no daemon at {url} ({exc}); is `moodstream run` going?") from None
