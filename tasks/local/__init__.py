"""Local stage: the local image and its database started on this machine (`doit local`)."""
