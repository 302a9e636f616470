"""One module per task type; `registry.py` lists them (see README, "Adding a task type")."""
