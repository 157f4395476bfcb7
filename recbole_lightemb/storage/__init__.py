"""Files on disk: checkpoints written and read as data only, models rebuilt from them, runs resumed from them."""
