"""Business rules: credits ledger, poses and background changes, validation."""
