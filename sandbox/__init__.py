"""Running untrusted, model-written code: the Docker image, a warm container pool and the in-container runner.

Nothing outside this package executes candidate programs.
"""
