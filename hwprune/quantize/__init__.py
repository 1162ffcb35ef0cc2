"""Quantization of PyTorch models onto fixed point (Brevitas, power-of-two scales).

`hwprune.quantize.qat`: module-swap quantization of any supported model, post-training
calibration, quantization-aware fine-tuning and the QONNX export that hwprune imports
bit-exactly.
"""

from hwprune.quantize.qat import (
    QuantConfig, activation_scales, calibrate, export_qonnx, finetune, module_map, quantize_model,
)

__all__ = ["QuantConfig", "activation_scales", "calibrate", "export_qonnx", "finetune", "module_map", "quantize_model"]
