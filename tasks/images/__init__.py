"""Image stage: what each image is (pure spec), its build context on disk, the Docker Engine, the tasks."""
