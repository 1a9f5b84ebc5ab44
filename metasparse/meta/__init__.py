"""Meta-learning on torch.func with a learn2learn-shaped API: MAML, first-order MAML, ANIL, Meta-SGD,
sparse-MAML, Reptile."""

from metasparse.meta.maml import MAML, Learner
from metasparse.meta.meta_sgd import MetaSGD
from metasparse.meta.reptile import Reptile
from metasparse.meta.sparse_maml import SparseMAML

__all__ = ["MAML", "Learner", "MetaSGD", "Reptile", "SparseMAML"]
