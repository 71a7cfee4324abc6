"""Monitor (CP): folds node reports into the environment state E(t)."""
