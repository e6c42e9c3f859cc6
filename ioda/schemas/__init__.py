"""Package data: the JSON schema of params.yaml (params.schema.yaml)."""
