"""Prometheus metrics of the inference services (one set per process; /metrics serves them)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "azr_inference_requests_total", "Generation requests by route and outcome", ["route", "status"]
)
TOKENS = Counter("azr_inference_tokens_generated_total", "Completion tokens generated", ["route"])
SEQUENCES = Counter("azr_inference_sequences_total", "Completions generated", ["route"])
LATENCY = Histogram(
    "azr_inference_request_seconds",
    "Generation request latency",
    ["route"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)
SWAP_SECONDS = Histogram(
    "azr_inference_swap_seconds",
    "Weight swap duration (pause to resume)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
SWAPS = Counter("azr_inference_swaps_total", "Weight swaps by outcome", ["status"])
WEIGHT_VERSION = Gauge("azr_inference_weight_version", "Weight version being served")
