"""Set-up, lock and check scripts. Python ones run from the repository root as modules: `python -m scripts.NAME`."""
