"""Audio in: devices, files, stdin and the demo under a liveness supervisor; decoding; simulated capture chains."""
