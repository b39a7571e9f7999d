"""PretrainedCNNFeatures and what only it uses: image inputs, preprocessing
and batching, batch-norm folding, fine-tuning, and ``backbones`` (the registry
of backbone sources: torchvision, timm, Hugging Face, your module)."""

from ._estimator import PretrainedCNNFeatures

__all__ = ["PretrainedCNNFeatures"]
