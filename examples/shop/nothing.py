"""A module without signals, for the CLI's "no signals found" test."""

ANSWER = 42
