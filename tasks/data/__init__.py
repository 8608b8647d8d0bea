"""Data stage: the datasets of data.yaml copied into the data bucket (pure plan, source and bucket adapters, tasks)."""
