"""The default offline scorer pack: a sentence encoder built as ONNX and run by ONNX Runtime.

`builder` turns safetensors weights into an ONNX graph (no PyTorch); `encoder` runs it.
Neither imports Django, so workers and tests use them without a database.
"""
