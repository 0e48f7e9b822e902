"""The smallest moodstream consumer: print each hop's mood (python examples/minimal.py [URL])."""

import asyncio
import contextlib
import json
import sys

from websockets.asyncio.client import connect


async def main(url: str = "ws://127.0.0.1:8765/") -> None:
    async with connect(url) as ws:
        async for text in ws:
            event = json.loads(text)
            if event["type"] == "emotion":
                print(event["seq"], event["label"] or event["state"], event["probabilities"])


with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends it quietly
    asyncio.run(main(*sys.argv[1:]))
