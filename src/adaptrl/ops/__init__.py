"""Pure maths shared by the algorithms: returns, baselines, losses, trust regions, stats."""
