"""The field simulator: the stand-in for the physical grid, served as Modbus devices and MQTT sensors."""
