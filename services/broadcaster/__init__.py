"""Broadcaster (RB): signed two-phase rollout and the shard registry."""
