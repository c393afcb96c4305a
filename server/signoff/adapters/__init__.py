"""Agents of the frameworks people already use, as signoff bots.

Each adapter is its own module and needs its framework's extra
(``pip install 'signoff[pydantic-ai]'``); importing this package loads none of them.
"""
