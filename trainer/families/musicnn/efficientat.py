"""EfficientAT's ``mn04_as`` (MobileNetV3 at width 0.4 trained on AudioSet by Transformer-to-CNN
distillation; Schmid et al. 2023, MIT) rebuilt in plain PyTorch, with its front-end, as a frozen
teacher: 16 kHz audio in, the 384-value embedding (the last feature map, averaged over time and
frequency, as the original returns it) out.

The original code (``mn/`` beside the checkpoint) needs torchvision and torchaudio; this rebuild
needs torch alone. Its module names are the original's, so the checkpoint loads strictly (every
tensor by name and shape, none left over). The front-end follows ``preprocess.AugmentMelSTFT`` at
inference: 32 kHz, pre-emphasis, 1024-point STFT of 800-sample Hann windows every 320 samples,
Kaldi's mel filterbank (128 bands, 0 to 15 kHz) computed here in numpy, ``(log(mel + 1e-5) + 4.5) / 5``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

RATE = 32000
N_MELS, N_FFT, WIN, HOP = 128, 1024, 800, 320
F_MAX = 15000.0  # AugmentMelSTFT's default: sr / 2 - fmax_aug_range / 2
WIDTH = 0.4
EMBEDDING = 384
# MobileNetV3-large as EfficientAT configures it: in, kernel, expanded, out, squeeze-excitation, hardswish, stride
BLOCKS = (
    (16, 3, 16, 16, False, False, 1),
    (16, 3, 64, 24, False, False, 2),
    (24, 3, 72, 24, False, False, 1),
    (24, 5, 72, 40, True, False, 2),
    (40, 5, 120, 40, True, False, 1),
    (40, 5, 120, 40, True, False, 1),
    (40, 3, 240, 80, False, True, 2),
    (80, 3, 200, 80, False, True, 1),
    (80, 3, 184, 80, False, True, 1),
    (80, 3, 184, 80, False, True, 1),
    (80, 3, 480, 112, True, True, 1),
    (112, 3, 672, 112, True, True, 1),
    (112, 5, 672, 160, True, True, 2),
    (160, 5, 960, 160, True, True, 1),
    (160, 5, 960, 160, True, True, 1),
)


def divisible(v: float, divisor: int = 8) -> int:
    """torchvision's ``_make_divisible``: channels rounded to a multiple of 8, never 10 % down."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def kaldi_mel_banks(n_mels: int, n_fft: int, rate: int, f_min: float, f_max: float) -> np.ndarray:
    """torchaudio.compliance.kaldi.get_mel_banks (no warping) padded to n_fft // 2 + 1 bins, as
    AugmentMelSTFT pads it: (n_mels, n_fft // 2 + 1), float32."""

    def mel(f: np.ndarray | float) -> np.ndarray:
        return 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)

    lo, hi = mel(f_min), mel(f_max)
    delta = (hi - lo) / (n_mels + 1)
    k = np.arange(n_mels, dtype=np.float64)[:, None]
    left, centre, right = lo + k * delta, lo + (k + 1) * delta, lo + (k + 2) * delta
    bins = mel(rate / n_fft * np.arange(n_fft // 2))[None, :]
    up, down = (bins - left) / (centre - left), (right - bins) / (right - centre)
    banks = np.maximum(0.0, np.minimum(up, down))
    return np.pad(banks, ((0, 0), (0, 1))).astype(np.float32)


def network():
    """The mn04 network (eval mode, untrained): ``forward(mel (B, 1, 128, T)) -> (logits, embedding)``."""
    import torch
    from torch import nn

    def cna(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: type[nn.Module] | None = nn.ReLU):
        # torchvision's ConvNormActivation: conv without bias, BatchNorm (EfficientAT's eps and momentum), activation
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout, eps=0.001, momentum=0.01),
        ]
        if act is not None:
            layers.append(act())
        return nn.Sequential(*layers)

    class SqueezeExcitation(nn.Module):
        def __init__(self, channels: int) -> None:
            super().__init__()
            squeeze = divisible(channels // 4)
            self.fc1, self.fc2 = nn.Linear(channels, squeeze), nn.Linear(squeeze, channels)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            scale = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3))))))
            return x * scale[:, :, None, None]

    class ConcurrentSE(nn.Module):  # EfficientAT's wrapper; with channel attention alone, one layer
        def __init__(self, channels: int) -> None:
            super().__init__()
            self.conc_se_layers = nn.ModuleList([SqueezeExcitation(channels)])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conc_se_layers[0](x)

    class InvertedResidual(nn.Module):
        def __init__(self, cin: int, k: int, exp: int, cout: int, se: bool, hs: bool, stride: int) -> None:
            super().__init__()
            act = nn.Hardswish if hs else nn.ReLU
            layers = [cna(cin, exp, 1, act=act)] if exp != cin else []
            layers.append(cna(exp, exp, k, stride, groups=exp, act=act))
            if se:
                layers.append(ConcurrentSE(exp))
            layers.append(cna(exp, cout, 1, act=None))
            self.block = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.block(x)
            return y + x if self.residual else y

    class MN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            blocks = [(divisible(a * WIDTH), k, divisible(e * WIDTH), divisible(o * WIDTH), s, h, st)
                      for a, k, e, o, s, h, st in BLOCKS]  # fmt: skip
            last = blocks[-1][3]
            self.features = nn.Sequential(
                cna(1, blocks[0][0], 3, 2, act=nn.Hardswish),
                *(InvertedResidual(*b) for b in blocks),
                cna(last, 6 * last, 1, act=nn.Hardswish),
            )
            hidden = divisible(1280 * WIDTH)
            self.classifier = nn.Sequential(
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(1),
                nn.Linear(6 * last, hidden),
                nn.Hardswish(),
                nn.Dropout(0.2),
                nn.Linear(hidden, 527),
            )

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = self.features(x)
            return self.classifier(x), x.mean(dim=(2, 3))

    return MN().eval()


class MN04:
    """The frozen teacher: :meth:`__call__` maps 16 kHz windows (n, samples) to (n, 384) embeddings;
    :meth:`tags` gives the 527 AudioSet probabilities (to check the weights on known sounds)."""

    def __init__(self, weights: Path, threads: int = 1) -> None:
        import torch

        torch.set_num_threads(threads)
        self.net = network()
        state = torch.load(weights, map_location="cpu", weights_only=True)
        self.net.load_state_dict(state, strict=True)
        self.banks = torch.from_numpy(kaldi_mel_banks(N_MELS, N_FFT, RATE, 0.0, F_MAX))
        self.window = torch.hann_window(WIN, periodic=False)

    def mel(self, audio16k: np.ndarray) -> np.ndarray:
        """(n, samples) at 16 kHz -> (n, 1, 128, frames): AugmentMelSTFT in eval mode, at 32 kHz."""
        import soxr
        import torch

        x = torch.from_numpy(np.stack([soxr.resample(a, 16000, RATE) for a in audio16k]).astype(np.float32))
        x = x[:, 1:] - 0.97 * x[:, :-1]  # pre-emphasis: conv1d with (-0.97, 1)
        spec = torch.stft(x, N_FFT, HOP, WIN, self.window, center=True, return_complex=True)
        mel = torch.matmul(self.banks, spec.abs() ** 2)
        return ((torch.log(mel + 1e-5) + 4.5) / 5.0)[:, None].numpy()

    def _run(self, audio16k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.inference_mode():
            logits, emb = self.net(torch.from_numpy(self.mel(audio16k)))
        return logits.numpy(), emb.numpy()

    def __call__(self, audio16k: np.ndarray) -> np.ndarray:
        return self._run(np.atleast_2d(audio16k))[1]

    def tags(self, audio16k: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self._run(np.atleast_2d(audio16k))[0]))
