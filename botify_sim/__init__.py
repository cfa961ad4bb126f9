"""The user simulator: a hidden music world, the course's user model, and a traffic driver.

Only this package reads the hidden parts of a world (embeddings, users). The platform sees
the public catalog alone; ``tests/unit/test_boundaries.py`` keeps it that way.
"""
