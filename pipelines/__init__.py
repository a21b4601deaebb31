"""Retraining jobs (Ray Train) and the MLflow registry steps; see pipelines/text_heads.py."""
