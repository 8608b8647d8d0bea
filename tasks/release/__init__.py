"""Release stage: the helm releases (what values they get, pure; deploying and checking them; rendering)."""
