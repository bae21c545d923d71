"""Evaluation harness: does the chosen bridge help?"""
