"""The sweep: configuration, the cell's ledger, the Optuna and MLflow doors, workers and claims."""
