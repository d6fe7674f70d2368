"""Executing jobs: consumers do the AMQP I/O, the worker runs one job."""
