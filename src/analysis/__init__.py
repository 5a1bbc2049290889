"""Measuring networks: their cost (profile.py: parameters, MACs, latency, memory) and how redundant their feature
maps are (redundancy.py)."""
