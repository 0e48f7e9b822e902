"""Raw s16le stereo music on stdout, as `arecord -f S16_LE -r RATE -c 2` writes it (for the README
walk-through, on a machine without a sound card): python tests/s16le_stereo.py RATE SECONDS."""

import sys

import numpy as np
import soxr

from streamer.audio.synth import mood_audio

rate, seconds = int(sys.argv[1]), float(sys.argv[2])
mono = soxr.resample(mood_audio("happy", seconds), 16000, rate)
stereo = np.repeat((np.clip(mono, -1, 1) * 32767).astype("<i2")[:, None], 2, axis=1)
sys.stdout.buffer.write(stereo.tobytes())
