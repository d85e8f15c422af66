"""ESP32 (WROOM-32): UART2 on GPIO17 (TX) / GPIO16 (RX), DE/RE on GPIO4, ADC1 channels on
GPIO32-35 (ADC2 is unusable while Wi-Fi runs, so only ADC1), pulses on GPIO25/26, dry contacts
on GPIO13,14,18,19,21,22,23,27, relay driver on GPIO5.

The ESP32 ADC is non-linear near both rails; ``atten`` 11 dB covers 0-3.3 V nominally. For
regulated parameters calibrate each channel (README) or use an RP2040 node.
"""

import machine

from hal.mcu import McuHal


class Esp32Hal(McuHal):
    UART_ID = 2
    TX = 17
    RX = 16
    DE = 4
    ADC_PINS = (32, 33, 34, 35)
    PULSE_PINS = (25, 26)
    DIGITAL_PINS = (13, 14, 18, 19, 21, 22, 23, 27)
    RELAY_PIN = 5

    def __init__(self) -> None:
        super().__init__()
        for a in self.adcs:
            a.atten(machine.ADC.ATTN_11DB)
