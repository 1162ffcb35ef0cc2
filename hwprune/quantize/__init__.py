"""Quantization of PyTorch models onto fixed point (Brevitas, power-of-two scales).

`hwprune.quantize.qat`: the quantized TextCNN, post-training calibration, quantization-aware
fine-tuning and the QONNX export that hwprune imports bit-exactly.
"""

from hwprune.quantize.qat import (
    QuantConfig, QuantTextCNN, activation_scales, calibrate, export_qonnx, finetune, quantize_textcnn,
)

__all__ = ["QuantConfig", "QuantTextCNN", "activation_scales", "calibrate", "export_qonnx", "finetune",
           "quantize_textcnn"]
