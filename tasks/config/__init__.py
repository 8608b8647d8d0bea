"""Config stage: the three YAML files of config/, read safely, validated against one schema
and its rules, normalized into a `Config` (tasks/config/model.py)."""
