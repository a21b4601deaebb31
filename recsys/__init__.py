"""Storage and logic of the recommender: document repositories, feature store, vector index.

No Ray or HTTP here: ``deployments/recommender.py`` wraps `RecommenderService` in a deployment,
and the tests and the offline evaluation use it directly. The ranking math lives in
``models/ranking.py``.
"""
