"""The catalog: servers (and later images, jobs and cells), behind a storage interface."""
