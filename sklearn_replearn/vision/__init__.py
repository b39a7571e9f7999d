"""PretrainedCNNFeatures and what only it uses: backbones and weights, image
inputs, preprocessing and batching, batch-norm folding, fine-tuning."""

from ._estimator import PretrainedCNNFeatures

__all__ = ["PretrainedCNNFeatures"]
