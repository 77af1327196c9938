"""Tools around the study: the services (PostgreSQL + MLflow server) and the benchmark."""
