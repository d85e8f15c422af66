"""Raspberry Pi Pico (RP2040): UART0 on GP0/GP1, DE/RE on GP2, ADC0-2 on GP26-28, pulses on
GP6/GP7, dry contacts on GP10-13 and GP18-21, relay driver on GP22; see firmware/README.md
"Wiring".

The RP2040 has three external ADC inputs (GP26-28), so at most three 4-20 mA channels here;
the WDT's longest timeout is 8.3 s (the config allows up to 8000 ms).
"""

from hal.mcu import McuHal


class Rp2Hal(McuHal):
    UART_ID = 0
    TX = 0
    RX = 1
    DE = 2
    ADC_PINS = (26, 27, 28)
    PULSE_PINS = (6, 7)
    DIGITAL_PINS = (10, 11, 12, 13, 18, 19, 20, 21)
    RELAY_PIN = 22
