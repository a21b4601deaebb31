"""HTTP routes of the ingress, one module per resource."""
