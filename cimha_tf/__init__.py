"""cimha-tf: CI-MHA (Cross Interaction Network, SIGIR 2021) in TensorFlow / Keras 3."""

__version__ = "0.1.0"
