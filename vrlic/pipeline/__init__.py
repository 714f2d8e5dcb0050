"""The pipeline: params.yaml (profiles, schema), the stages' code and stamps, the notebook runner."""
