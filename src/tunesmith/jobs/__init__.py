"""The job queue: creating jobs, validating their files, and workers that run them."""
