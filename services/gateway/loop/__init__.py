"""The gateway's side of the self-play loop: the HTTP and Redis implementations of the loop's
ports (`adapters`) and the inference replica set (`replicas`). The loop itself is transport-free
and lives in `azr.loop`."""
