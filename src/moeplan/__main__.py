"""`moeplan` (the console script) and `python -m moeplan`: the CLI, as a short-lived process."""

import gc

# A command allocates some 50,000 objects that live until it exits (modules, classes, the catalog
# entry, the plan), and CPython's cyclic collector, at its default thresholds (700, 10, 10), scans
# them again and again for cycles that are not there: 0.08 s of `moeplan plan`'s 0.7 s of CPU
# (measured with gc.callbacks). Collected this rarely, as mypy tunes its own start
# (mypy/build.py, tune_gc), the collector costs nothing measurable and peak memory is unchanged.
# `moeplan serve`, a long-lived server, goes back to the defaults (cli.serve).
SHORT_LIVED_GC = (200_000, 30, 30)


def main() -> None:
    gc.set_threshold(*SHORT_LIVED_GC)  # before the imports, which allocate most of those objects
    from moeplan.cli import app

    app(prog_name="moeplan")


if __name__ == "__main__":
    main()
