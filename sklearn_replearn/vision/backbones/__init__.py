"""Backbone sources of PretrainedCNNFeatures."""
