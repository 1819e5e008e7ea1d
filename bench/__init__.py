"""Benchmark harness for motia-state (issue 6): every adapter against its raw driver, in one run.

Run ``python -m bench --help`` (or ``make bench``). Not part of the test suite: nothing here asserts on time.
"""
