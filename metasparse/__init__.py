"""metasparse: meta-learned adaptive sparsity controllers for transformer encoders."""

__version__ = "0.1.0"
