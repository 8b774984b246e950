"""Absolute Zero self-play reinforcement learning as a set of services.

`azr.core` is the transport-free algorithm (tasks, prompts, parsing, verification rules, rewards,
TRR++); `azr.contracts` the messages between services; `azr.common` neutral helpers (checkpoints,
model files, HTTP plumbing); `azr.loop` the transport-free self-play loop. `services.*` are thin
adapters (HTTP, Celery, Redis) around them and never imported from here (docs/architecture.md).
"""

__version__ = "0.1.0"
