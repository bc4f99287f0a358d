"""`python -m moeplan ...`: the CLI, as the `moeplan` script runs it."""

from moeplan.cli import app

app(prog_name="moeplan")
