"""Sizes every request shares (the request bodies and the list dials read them)."""

K_MIN = 1
K_MAX = 100
K_DEFAULT = 10
NAME_MAX_LENGTH = 200
