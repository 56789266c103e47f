"""Sans-I/O core of the reference servers.

Nothing here opens a socket, reads a clock or imports aiohttp, websockets or redis:
every function takes the current time as an argument, so the rules can be tested
without I/O and shared by every transport and broker.
"""
