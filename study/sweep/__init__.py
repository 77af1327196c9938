"""The sweep: reading it (config), a worker's context, the cell, the MLflow mirror (record) and backlog, workers and
claims; the Optuna door (tuning, with the cells' ledger) and the MLflow door (tracking); the names both show."""
