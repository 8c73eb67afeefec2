"""Pieces every room of `agents` shares, each once: errors, atomic I/O, config validation, threads, W&B tracking, Ray."""
