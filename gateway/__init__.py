"""The edge gateway: polls Modbus devices, subscribes to MQTT sensors, writes points to the historian."""
