"""The generator leaves the job as an ONNX model: named inputs and outputs, metadata, checked against Keras."""

from __future__ import annotations

import datetime
import json
import logging
from pathlib import Path

import keras
import numpy as np
import onnx
import tensorflow as tf

from job import __version__, signals
from job.config import TrainConfig
from job.errors import ExportError
from job.rundir.claim import exported_step as exported_step  # read where the run folder is read, without TensorFlow
from serving import triton
from serving.files import atomic_write_bytes
from serving.model import (
    BATCH_DIM,
    IMAGE_OUTPUT,
    LABEL_INPUT,
    LATENT_INPUT,
    META_CLASS,
    META_CLASS_NAMES,
    META_DATA,
    META_IMAGE_SHAPE,
)

log = logging.getLogger(__name__)

OPSET = 17
TOLERANCE = 1e-5  # max abs difference between onnxruntime's and Keras' images on the same latents


def export_onnx(generator: keras.Model, path: Path, metadata: dict[str, object]) -> float:
    """Write `generator` (inference mode) to `path` as ONNX, atomically, after checking it; returns the max abs diff."""
    import tf2onnx  # imported here: it is slow to import and only export needs it

    latent_dim = int(generator.inputs[0].shape[-1])
    conditional = len(generator.inputs) == 2
    signature = [tf.TensorSpec([None, latent_dim], tf.float32, name=LATENT_INPUT)]
    if conditional:
        signature.append(tf.TensorSpec([None], tf.int64, name=LABEL_INPUT))

    # A plain function of the inputs, with the input and output names that serving relies on.
    @tf.function(input_signature=signature)
    def images_of(z, label=None):
        images = generator(z if label is None else [z, tf.cast(label, tf.int32)], training=False)
        # onnxruntime's tanh can overshoot by an ulp or two: the contract is [-1, 1], so clip.
        return {IMAGE_OUTPUT: tf.clip_by_value(images, -1.0, 1.0)}

    model, _ = tf2onnx.convert.from_function(images_of, input_signature=signature, opset=OPSET)
    _name_batch_dimension(model)
    shape = ", ".join(map(str, generator.outputs[0].shape[1:]))
    model.doc_string = f"mnist-gan generator: latents z [batch, latent_dim] -> images [batch, {shape}] in [-1, 1]"
    onnx.helper.set_model_props(model, {key: str(value) for key, value in metadata.items()})
    onnx.checker.check_model(model)
    data = model.SerializeToString()

    difference = _compare_with_keras(generator, data, latent_dim, conditional)
    if not difference <= TOLERANCE:
        raise ExportError(f"ONNX output differs from Keras' by {difference:.2e} (> {TOLERANCE:g}); nothing written")
    signals.raise_if_requested()  # a signal that tf2onnx or onnxruntime swallowed: nothing written after it
    atomic_write_bytes(path, data)
    step = f"step {metadata['step']} " if "step" in metadata else ""
    log.info("exported %sto %s (max abs difference to Keras %.1e)", step, path, difference)
    triton.write_beside(path)  # a run's generator.onnx: RUN/triton/generator, the Triton model repository
    return difference


def metadata(config: TrainConfig, data_set: dict, step: int, clusters: int = 0) -> dict[str, object]:
    """The model's metadata: how it was trained, and what its data is (ImageData.description); `clusters`: a
    self-conditioned model's (job/networks/clusters.py)."""
    names = {META_CLASS_NAMES: json.dumps(data_set["class_names"])} if data_set["class_names"] else {}
    self_conditioning = {"clusters": clusters} if clusters else {}
    return {
        META_IMAGE_SHAPE: json.dumps(data_set["image_shape"]),
        META_DATA: data_set["name"],
        **names,
        **self_conditioning,
        "arch": config.arch,
        "latent_dim": config.latent_dim,
        META_CLASS: config.digit,
        "conditional": str(config.conditional).lower(),
        "ema_decay": config.ema_decay,
        "step": step,
        "preset": config.preset,
        "version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _name_batch_dimension(model: onnx.ModelProto) -> None:
    # tf2onnx calls the dynamic batch dimension 'unk__N'; serving and users see 'batch'.
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_DIM


def _compare_with_keras(generator: keras.Model, data: bytes, latent_dim: int, conditional: bool) -> float:
    import onnxruntime

    latents = np.random.default_rng(12345).standard_normal((64, latent_dim)).astype(np.float32)
    labels = np.arange(64) % (generator.get_layer("label_embedding").input_dim if conditional else 1)
    feed = {LATENT_INPUT: latents} | ({LABEL_INPUT: labels.astype(np.int64)} if conditional else {})
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    (onnx_images,) = session.run([IMAGE_OUTPUT], feed)
    inputs = [latents, labels.astype(np.int32)] if conditional else latents
    keras_images = generator(inputs, training=False).numpy()
    return float(np.max(np.abs(onnx_images - keras_images)))
