from .base import Valuator


class DataOOB(Valuator):  # placeholder, being implemented
    method_name = "data_oob"
