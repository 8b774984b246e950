"""The self-play loop: the orchestrator that turns proposer, solver, executor and trainer into
Absolute Zero. Transport lives in `adapters`; everything else works on the records in `ports`."""
