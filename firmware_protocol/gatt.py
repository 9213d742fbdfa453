"""Where the byte stream lives on Bluetooth LE: the pen's GATT service and its two characteristics.

Part of the wire convention, like the framing: the same COBS frames flow over BLE as over a
serial line, written by the host to RX and notified by the pen on TX, cut wherever the ATT MTU
cuts them (the 0x00 delimiter makes every cut harmless). Pens also carry the standard Device
Information service (0x180A) with model, serial number and firmware revision.
"""

PEN_SERVICE_UUID = "f52d0001-6f98-49c2-b917-93e90a2869db"
"""The pen's own 128-bit service (a Nordic-UART-like layout under our own base UUID)."""
PEN_RX_UUID = "f52d0002-6f98-49c2-b917-93e90a2869db"
"""Host to pen: WRITE and WRITE WITHOUT RESPONSE."""
PEN_TX_UUID = "f52d0003-6f98-49c2-b917-93e90a2869db"
"""Pen to host: NOTIFY."""
DEVICE_INFORMATION_SERVICE_UUID = "0000180a-0000-1000-8000-00805f9b34fb"
