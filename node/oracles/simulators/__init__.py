"""Shop-floor simulators for demos and tests: a coating-line OPC UA PLC, an MQTT device fleet."""
