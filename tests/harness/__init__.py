"""Starts and stops the real parts of the local system for tests and the dev stack.

Every process is started by this package, remembered by PID and ended by PID; nothing here
touches a process it did not start. Everything listens on 127.0.0.1 only.
"""
