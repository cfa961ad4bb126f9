"""botify: an event-streaming recommender platform.

This is the core package: pure domain code (catalog, events, experiments, per-user state,
recommenders) plus the thin adapters the services share (Kafka, Redis, embedded stack).
It never imports a service, FastAPI, faust or torch.
"""

__version__ = "0.1.0"
