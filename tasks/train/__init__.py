"""The train stage: `stage.py` fits the model (lightning_model/) on tokenize's shards; `report.py` plots it."""
