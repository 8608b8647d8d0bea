"""Cluster stage: what the releases need from the cluster (the hub's node, its static IP), and diagnosis."""
