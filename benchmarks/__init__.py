"""Speed and memory benchmarks (benchmarks/RESULTS.md). Run each from the repository root as a module:
`python -m benchmarks.NAME`."""
