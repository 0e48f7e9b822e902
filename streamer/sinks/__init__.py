"""Consumers of the event bus, one shape for all: WebSocket server, page, JSONL, dashboard, MQTT, history, mDNS."""
