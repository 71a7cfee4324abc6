"""Node agent: runs assigned model segments and forwards encrypted frames."""
