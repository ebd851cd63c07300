"""Root conftest: load the saliencybench pytest plugin and little else."""
pytest_plugins = ["suite.plugin"]
