"""Delivery: mail transports (`smtp`, `file`), building each message, signed links, and the outbox send loop."""
