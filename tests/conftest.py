"""Shared test settings: the roger_cluster plugin is loaded through its entry point."""
