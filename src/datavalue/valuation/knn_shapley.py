from .base import Valuator


class KNNShapley(Valuator):  # placeholder, being implemented
    method_name = "knn_shapley"
