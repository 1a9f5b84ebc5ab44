"""Comparison methods: the lookup baseline (the anchor a dense model must beat), later sparsity baselines."""
