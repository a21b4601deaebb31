"""The ingress deployment: the only HTTP and gRPC surface of the graph."""
