"""Delivery: MIME message building and sending."""
