"""Model nodes: thin Ray Serve deployments over the model classes in ``models``."""
