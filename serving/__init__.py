"""Generate images (MNIST digits, or any data's) from an exported generator with onnxruntime alone (no TensorFlow)."""
