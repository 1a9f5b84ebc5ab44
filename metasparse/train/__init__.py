"""Backbone training: sparsity-aware pretraining, cached by a hash of its config and data."""
