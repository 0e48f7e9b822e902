"""Every architecture converts to full-integer TFLite, runs in LiteRT, stays under 1 MB, and its
int8 output follows the float Keras model."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # TensorFlow conversion of unrolled RNNs takes a while


@pytest.mark.parametrize("architecture", ["cnn", "cnn_lstm", "cnn_gru", "linear"])
def test_architecture_converts_to_int8(architecture: str) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from trainer.common.export import convert, quantization_of
    from trainer.families.paper.architectures import batch_one_copy, build, pool_sizes

    frames = 998  # the shipped 10 s window
    model = build(architecture, frames, 20, 3)
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (64, frames, 20)).astype(np.float32)
    tflite = convert(batch_one_copy(model, architecture), x)
    assert len(tflite) <= 1_000_000
    (in_scale, in_zero), (out_scale, out_zero) = quantization_of(tflite)
    assert in_scale > 0 and out_scale == pytest.approx(1 / 256) and out_zero == -128
    interp = Interpreter(model_content=tflite)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    assert tuple(inp["shape"]) == (1, frames, 20) and inp["dtype"] == np.int8
    reference = model.predict(x[:8], verbose=0)
    for window, expected in zip(x[:8], reference, strict=True):
        q = np.clip(np.round(window / in_scale) + in_zero, -128, 127).astype(np.int8)
        interp.set_tensor(inp["index"], q[np.newaxis])
        interp.invoke()
        probs = (interp.get_tensor(out["index"])[0].astype(np.float32) - out_zero) * out_scale
        assert abs(probs.sum() - 1) < 0.03
        assert np.max(np.abs(probs - expected)) < 0.08
    if architecture != "linear":
        assert np.prod(pool_sizes(frames)) * 20 <= frames <= np.prod(pool_sizes(frames)) * 40


def test_pool_sizes_leave_tens_of_steps() -> None:
    from trainer.families.paper.architectures import pool_sizes

    for frames in (198, 498, 998, 2998):
        steps = frames / np.prod(pool_sizes(frames))
        assert 16 <= steps <= 40, (frames, pool_sizes(frames), steps)
