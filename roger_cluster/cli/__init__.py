"""The command-line tools: parse, build config, call Node or Client. Nothing else.

Environment variables are read here and only here.
"""
