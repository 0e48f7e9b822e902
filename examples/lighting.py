"""Light that follows the music's mood: a moodstream consumer driving a WLED strip.

    python examples/lighting.py                         # print the colours
    python examples/lighting.py --wled 192.168.1.50     # drive a WLED light (JSON HTTP API)
    python examples/lighting.py ws://pi.local:8765/ --token SECRET --wled wled.local

The colour is the mix of the labels' colours (sent by the daemon in ``hello``) weighted by the
temporal model's belief (``probabilities``), so a mood that is half happy and half sad lights in between; silence
dims the light. The light fades towards that colour exponentially (``--fade`` seconds to get most
of the way), updated ``--rate`` times a second; WLED gets ``POST /json/state`` with the colour only
when it changes. Needs only ``websockets`` and the standard library; reconnects when the daemon
restarts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import urllib.request

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

RGB = tuple[float, float, float]
OFF: RGB = (0.0, 0.0, 0.0)
SILENCE_LEVEL = 0.08  # silence dims to this fraction of full brightness


def hex_to_rgb(color: str) -> RGB:
    r, g, b = (float(int(color[i : i + 2], 16)) for i in (1, 3, 5))
    return r, g, b


def target_color(event: dict, colors: dict[str, str], current: RGB) -> RGB:
    """Probability-weighted mix of label colours; dim for silence; unchanged while warming up."""
    if event["state"] == "warming_up":
        return current
    probs = event["probabilities"]
    total = sum(probs.values()) or 1.0
    mix = [0.0, 0.0, 0.0]
    for label, p in probs.items():
        for i, c in enumerate(hex_to_rgb(colors.get(label, "#808080"))):
            mix[i] += c * p / total
    scale = SILENCE_LEVEL if event["state"] == "silence" else 1.0
    return mix[0] * scale, mix[1] * scale, mix[2] * scale


class Fader:
    """Exponential approach: after ``seconds`` the light is 95 % of the way to its target."""

    def __init__(self, seconds: float) -> None:
        self.rate = 3.0 / max(seconds, 1e-3)  # e^-3 = 5 % left
        self.current: RGB = OFF
        self.target: RGB = OFF

    def step(self, dt: float) -> tuple[int, int, int]:
        k = 1.0 - math.exp(-self.rate * dt)
        r, g, b = (c + (t - c) * k for c, t in zip(self.current, self.target, strict=True))
        self.current = (r, g, b)
        return round(r), round(g), round(b)


class WledLight:
    """A WLED device: its JSON API sets the first segment's colour; we do the fading ourselves."""

    def __init__(self, host: str) -> None:
        self.url = f"http://{host}/json/state"

    def _post(self, rgb: tuple[int, int, int]) -> None:
        body = json.dumps({"on": True, "bri": 255, "transition": 0, "seg": [{"col": [list(rgb)]}]})
        request = urllib.request.Request(self.url, body.encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=2) as response:
            response.read()

    async def show(self, rgb: tuple[int, int, int]) -> None:
        try:
            await asyncio.to_thread(self._post, rgb)
        except OSError as exc:  # the light is off or rebooting: keep going, try again next time
            print(f"WLED {self.url}: {exc}", file=sys.stderr)


class PrintLight:
    """No light: print the colour (with a swatch on a true-colour terminal)."""

    async def show(self, rgb: tuple[int, int, int]) -> None:
        r, g, b = rgb
        swatch = f"\x1b[48;2;{r};{g};{b}m      \x1b[0m " if sys.stdout.isatty() else ""
        print(f"{swatch}#{r:02x}{g:02x}{b:02x}  rgb({r}, {g}, {b})", flush=True)


async def follow(url: str, token: str | None, fader: Fader, colors: dict[str, str]) -> None:
    """Read events forever, reconnecting; each one moves the fader's target."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    delay = 0.5
    while True:
        try:
            async with connect(url, additional_headers=headers) as ws:
                delay = 0.5
                async for text in ws:
                    message = json.loads(text)
                    if message["type"] in ("hello", "state"):
                        colors.update(message["model"]["colors"])
                        message = message.get("state") or {"state": "warming_up"}
                    if message.get("type", "emotion") == "emotion":
                        fader.target = target_color(message, colors, fader.target)
        except InvalidStatus as exc:
            if exc.response.status_code in (401, 403):
                raise SystemExit(f"{url}: refused ({exc.response.status_code}); check --token") from None
        except (OSError, ConnectionClosed, TimeoutError):
            pass
        await asyncio.sleep(delay)
        delay = min(2 * delay, 10.0)


async def drive(light: WledLight | PrintLight, fader: Fader, rate: float) -> None:
    """Advance the fade ``rate`` times a second; send only colours that changed."""
    last = None
    while True:
        rgb = fader.step(1.0 / rate)
        if rgb != last:
            await light.show(rgb)
            last = rgb
        await asyncio.sleep(1.0 / rate)


async def main_async(args: argparse.Namespace) -> None:
    fader = Fader(args.fade)
    light = WledLight(args.wled) if args.wled else PrintLight()
    await asyncio.gather(follow(args.url, args.token, fader, {}), drive(light, fader, args.rate))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", default="ws://127.0.0.1:8765/")
    parser.add_argument("--token", help="the daemon's token, if it requires one")
    parser.add_argument("--wled", metavar="HOST", help="WLED device (host or host:port)")
    parser.add_argument("--fade", type=float, default=1.5, help="seconds to fade (default 1.5)")
    parser.add_argument("--rate", type=float, default=10.0, help="updates a second (default 10)")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
