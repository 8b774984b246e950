"""proposer"""
