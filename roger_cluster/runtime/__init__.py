"""Executing jobs, one way: consumers take deliveries, the pipeline decodes them, the
worker runs the job and says how it ended, the settler settles it and frees its keys."""
