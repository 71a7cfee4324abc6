"""Scenarios: emulated clusters with timed events, run on the local test bed.

The built-in scenario files (``builtin/*.yaml``) ship as package data.
"""
