"""Benchmarks (not timed tests): ``python -m benchmarks`` runs every ``benchmarks/bench_*.py`` ``main()``."""
