"""The advisor: a results store of every run and meta-test, honest comparisons, and a
surrogate model that predicts, for a new task family, how well each candidate strategy
will do and picks the best (Bayesian optimisation over real runs)."""
