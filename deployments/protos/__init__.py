"""gRPC interface of the service (``ai_service.proto``) and its generated Python modules."""
