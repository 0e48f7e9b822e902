"""Consumers of the event bus, one shape: WebSocket server, page, JSONL, dashboard, MQTT, history, mDNS, demo guide."""
