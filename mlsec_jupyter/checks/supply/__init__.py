"""Supply-chain checks: static scans of model files (pickle, torch, joblib, numpy) that never load them."""
