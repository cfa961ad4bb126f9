"""botify: an event-streaming recommender platform.

This is the core package: pure domain code (catalog, events, experiments, per-user state,
recommenders, analysis, the trainer's rules) plus the thin adapters the services share
(Kafka, Redis). It never imports a service, the CLI, the simulator, FastAPI, faust, torch,
uvicorn, typer, rich or mirakuru: the import contracts in pyproject.toml refuse them.
"""

__version__ = "0.1.0"
