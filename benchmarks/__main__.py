"""Run every ``benchmarks/bench_*.py`` module's ``main()``."""

import importlib
import pkgutil

import benchmarks

for info in sorted(pkgutil.iter_modules(benchmarks.__path__), key=lambda m: m.name):
    if info.name.startswith("bench_"):
        importlib.import_module(f"benchmarks.{info.name}").main()
