"""Orchestrator (AO): the adaptive control loop."""
