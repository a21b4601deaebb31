"""What the ingress does, written once for HTTP and gRPC.

Plain async functions taking the replica's ``IngressState`` (or a node handle) and typed
arguments; they raise domain errors (``models.exceptions``), never
HTTP errors: ``deployments/ingress/errors.py`` and ``grpc.py`` map them at the edge.
"""
