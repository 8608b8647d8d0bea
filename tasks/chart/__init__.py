"""Chart stage: the classroom chart packaged by content version and published to a bucket helm repository."""
