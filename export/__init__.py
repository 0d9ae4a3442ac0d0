"""torch -> ONNX export, validation and the onnxruntime wrapper (installed as ``hepmpm.export``).

The exporter arrives with its issue; this package is where it lives.
"""
