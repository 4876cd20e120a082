"""Deployment: ONNX export, TensorRT engines, and the local services for development and tests."""
