"""Generate MNIST digits from an exported generator with onnxruntime alone (never TensorFlow)."""
