"""Absolute Zero self-play reinforcement learning as a set of services.

`azr.core` is the transport-free algorithm (tasks, prompts, parsing, verification rules, rewards,
TRR++); `services.*` are thin adapters (HTTP, Celery, Redis) around it.
"""

__version__ = "0.1.0"
