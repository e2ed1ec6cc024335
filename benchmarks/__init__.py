"""leadbot's benchmarks (not part of the test suite): `.venv/bin/python -m benchmarks.run`."""
