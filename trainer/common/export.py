"""Export: Keras model -> int8 and float TFLite files with the moodstream metadata inside.

The metadata is a TFLite ``metadata`` entry named "moodstream" holding JSON, added with the
official flatbuffer schema; the daemon reads it back without TensorFlow (streamer.model.metadata).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import flatbuffers
import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from tensorflow.lite.python import schema_py_generated as schema

from streamer.model.metadata import METADATA_NAME, ModelMetadata
from streamer.util.atomic import write_atomic

REPRESENTATIVE_WINDOWS = 256


def convert(model: tf.keras.Model, representative: np.ndarray | None) -> bytes:
    """TFLite flatbuffer: full-integer int8 when ``representative`` (standardised training
    windows) is given, else float32. A model with recurrent layers must come as a batch-1 copy
    (trainer.families.paper.architectures.batch_one_copy)."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if representative is not None:
        rng = np.random.default_rng(0)
        pick = rng.permutation(len(representative))[:REPRESENTATIVE_WINDOWS]
        samples = representative[pick].astype(np.float32)

        def dataset() -> Iterator[list[np.ndarray]]:
            for window in samples:
                yield [window[np.newaxis]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def quantization_of(tflite: bytes) -> tuple[tuple[float, int], tuple[float, int]]:
    """(scale, zero_point) of the input and the output tensor; (0.0, 0) for float tensors."""
    interp = Interpreter(model_content=tflite)
    out = []
    for details in (interp.get_input_details()[0], interp.get_output_details()[0]):
        scale, zero = details["quantization"]
        out.append((float(scale), int(zero)) if details["dtype"] != np.float32 else (0.0, 0))
    return out[0], out[1]


def embed_metadata(tflite: bytes, payload: bytes) -> bytes:
    """The model with its "moodstream" metadata entry set to ``payload`` (JSON of a
    ModelMetadata), replacing an earlier one."""
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(tflite, 0))
    data = np.frombuffer(payload, dtype=np.uint8)
    model.metadata = model.metadata or []
    for entry in model.metadata:
        if entry.name in (METADATA_NAME, METADATA_NAME.encode()):
            model.buffers[entry.buffer].data = data
            break
    else:
        buffer = schema.BufferT()
        buffer.data = data
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = METADATA_NAME
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    builder = flatbuffers.Builder(len(tflite) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def export(
    model: tf.keras.Model,
    metadata: ModelMetadata,
    representative: np.ndarray,
    int8_path: Path,
    float_path: Path | None = None,
) -> ModelMetadata:
    """Write the int8 model (and the float one when asked); returns the int8 file's metadata.

    ``metadata`` carries everything but the quantisation, which comes from the conversion."""
    files = [(int8_path, representative)] + ([(float_path, None)] if float_path else [])
    written = metadata
    for path, rep in files:
        tflite = convert(model, rep)
        q_in, q_out = quantization_of(tflite)
        meta = dataclasses.replace(metadata, input_quantization=q_in, output_quantization=q_out)
        write_atomic(Path(path), embed_metadata(tflite, meta.to_json()))
        if rep is not None:
            written = meta
    return written
