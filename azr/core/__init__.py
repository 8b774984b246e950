"""The Absolute Zero algorithm, free of any transport: no HTTP, no Redis, no torch."""
