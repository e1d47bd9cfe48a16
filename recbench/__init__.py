"""recbench: experiment runner for graph and kernel recommenders (DGL + PyTorch)."""

import os

# DGL asks for a backend on first import and writes ~/.dgl/config.json otherwise.
os.environ.setdefault("DGLBACKEND", "pytorch")

__version__ = "0.1.0"
