"""The ORIGINAL musicnn graph, run in its own process: ``python tests/musicnn_reference.py WHEEL
CHECKPOINT_DIR INPUT.npy OUTPUT.npz``.

It imports the wheel's own models.py and configuration.py (unpacked to a scratch folder, never
installed), builds the MSD_musicnn graph with tf.compat.v1 exactly as the wheel's extractor.py
does (name scope "model", placeholders, Saver.restore), and writes the penultimate layer and the
tag logits. TF1 layers need legacy Keras: the caller sets TF_USE_LEGACY_KERAS=1 (tf_keras, in
the train extra)."""

from __future__ import annotations

import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np


def main(wheel: str, checkpoint: str, inp: str, out: str) -> None:
    scratch = Path(tempfile.mkdtemp())
    with zipfile.ZipFile(wheel) as z:
        for name in ("musicnn/models.py", "musicnn/configuration.py"):
            z.extract(name, scratch)
    (scratch / "musicnn" / "__init__.py").write_text("")
    sys.path.insert(0, str(scratch))
    import tensorflow as tf
    from musicnn import models

    tf.compat.v1.disable_eager_execution()
    x_value = np.load(inp)
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, x_value.shape[1], 96])
        is_training = tf.compat.v1.placeholder(tf.bool)
        logits, *_, penultimate = models.define_model(x, is_training, "MSD_musicnn", 50)
    with tf.compat.v1.Session() as sess:
        tf.compat.v1.train.Saver().restore(sess, checkpoint.rstrip("/") + "/")
        pen, log = sess.run([penultimate, logits], feed_dict={x: x_value, is_training: False})
    np.savez(out, penultimate=pen, logits=log)


if __name__ == "__main__":
    main(*sys.argv[1:5])
