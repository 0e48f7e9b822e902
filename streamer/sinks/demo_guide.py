"""The demo's guide: while the demo plays its first round of moods, one log line per mood says what
played and what the model showed, so a first run says what it is doing instead of looking broken.

Only when the source is the demo (streamer/audio/demo.py); after the first round it says how to
judge the model on real music and stops reading the bus.
"""

from __future__ import annotations

import asyncio
import logging

from streamer.audio.demo import DemoMusic, Mood
from streamer.core.events import EmotionEvent, EventBus, Subscription
from streamer.util import terminal

log = logging.getLogger(__name__)

QUEUE = 64  # hops it may lag behind (it only counts them)


class DemoGuide:
    """Counts what the model showed during each of the demo's moods and logs it once per mood."""

    name = "demo"

    def __init__(self, music: DemoMusic, hop_seconds: float) -> None:
        self.music = music
        self.hop_seconds = hop_seconds
        self.lines = 0
        self._segment = -1  # index of the mood being counted
        self._shown: dict[str, float] = {}  # seconds shown per label or state in this segment
        self._subscription: Subscription | None = None

    def stats(self) -> dict[str, int]:
        return {"demo_lines": self.lines}

    async def run(self, bus: EventBus, stop: asyncio.Event) -> None:
        """Until the first round of moods is over, or the bus closes."""
        subscription = self._subscription = bus.subscribe(QUEUE)
        try:
            async for event in subscription:
                if isinstance(event, EmotionEvent) and self.take(event):
                    break
        finally:
            subscription.close()

    def take(self, event: EmotionEvent) -> bool:
        """Count one hop; log when a new mood starts. True once the first round is over."""
        middle = max(0.0, event.stream_time - self.hop_seconds / 2)  # the hop's audio is mostly here
        segment = int(middle // self.music.mood_seconds)
        if segment != self._segment:
            done = self._segment + 1 >= len(self.music.moods)
            self._say(self.music.mood_at(middle), done)
            if done:
                return True
            self._segment, self._shown = segment, {}
        shown = event.label if event.state == "emotion" and event.label else event.state
        self._shown[shown] = self._shown.get(shown, 0.0) + self.hop_seconds
        return False

    def _say(self, now: Mood, done: bool) -> None:
        seconds = f"{self.music.mood_seconds:g} s"
        if self._segment < 0:
            names = ", ".join(m.name for m in self.music.moods)
            message = (
                f"demo: moodstream plays its own synthesised music, one mood every {seconds} ({names}); "
                f'now playing "{now.name}" ({now.description})'
            )
        else:
            played = self.music.moods[self._segment % len(self.music.moods)]
            ranked = sorted(self._shown.items(), key=lambda kv: -kv[1])
            heard = ", ".join(
                f"{terminal.safe(k.replace('_', ' '))} {v:.0f} s" for k, v in ranked
            )  # the model's labels
            message = f'demo: during "{played.name}" the model showed {heard}'
            message += (
                "; the moods now repeat. Real music judges the model: play some to the input, "
                "or `moodstream run --source file:song.flac --realtime`"
                if done
                else f'; now playing "{now.name}" ({now.description})'
            )
        log.info("%s", message)
        self.lines += 1
