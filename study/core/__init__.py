"""The numeric core: the six rules, networks, data, batches, the training loop and its kernels (numpy and numba;
no Optuna, no MLflow)."""
