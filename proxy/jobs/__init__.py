"""Long jobs (materialize, seed): cells claimed with a lease, run, and persisted."""
