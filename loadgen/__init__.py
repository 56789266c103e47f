"""The rtbench load generator.

It never imports :mod:`servers` except the shared wire-protocol codec
(:mod:`servers.core.protocol`): it must work against any server.
"""
