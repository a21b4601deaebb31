"""Storage adapters: Redis, MongoDB and the MLflow registry, each with its outage behaviour."""
