"""moodstream benchmarks: `python -m bench` (or `make bench`) writes docs/BENCHMARKS.md and docs/benchmarks.json."""
