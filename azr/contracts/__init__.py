"""The messages between services, defined once: servers and clients import the same classes.

One module per boundary: `inference` (propose/solve/generate/weights), `executor` (run/validate/
verify), `trainer` (the reward batch on the Redis stream), `gateway` (the gateway's HTTP API)
and `tasks` (the task JSON shared by several of them).
"""
