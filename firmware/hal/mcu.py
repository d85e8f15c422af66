"""What rp2 and esp32 share: machine.UART with a DE/RE GPIO, ADC, pin IRQ pulse counters, WDT.

RS-485 turnaround: DE (and /RE, tied together on a MAX3485/THVD1450 style transceiver) goes
high before the first start bit and low only after the last stop bit has left the UART shift
register (``UART.flush()`` waits for that on both ports), then the receiver is on again. A
master that sends its next request sooner than 3.5 characters after our reply violates the
protocol anyway, so dropping DE right after the stop bit loses nothing.

Pulse inputs: a falling-edge IRQ runs :class:`inputs.Debounce` (two ints, no allocation, as a
hard IRQ handler must), so contact bounce shorter than ``debounce_ms`` is not counted.
"""

import time

import inputs
import machine

from hal.base import Hal, us


class McuHal(Hal):
    UART_ID = 0
    TX = 0
    RX = 1
    DE = 2
    ADC_PINS: tuple[int, ...] = ()
    PULSE_PINS: tuple[int, ...] = ()
    DIGITAL_PINS: tuple[int, ...] = ()
    RELAY_PIN = 0

    def __init__(self) -> None:
        self.uart: machine.UART | None = None
        self.de = machine.Pin(self.DE, machine.Pin.OUT, value=0)
        self.adcs = [machine.ADC(machine.Pin(p)) for p in self.ADC_PINS]
        self.di_pins = [machine.Pin(p, machine.Pin.IN, machine.Pin.PULL_UP)
                        for p in self.DIGITAL_PINS]
        self.relay_pin = machine.Pin(self.RELAY_PIN, machine.Pin.OUT, value=0)
        self.counters: list[tuple[machine.Pin, inputs.Debounce]] = []
        self.wdt: machine.WDT | None = None
        self.buf = bytearray(256)

    def uart_open(self, baud: int, parity: str) -> None:
        par = {"N": None, "E": 0, "O": 1}[parity]
        self.uart = machine.UART(self.UART_ID, baudrate=baud, bits=8, parity=par, stop=1,
                                 tx=machine.Pin(self.TX), rx=machine.Pin(self.RX),
                                 rxbuf=512, txbuf=512)

    def uart_read(self) -> bytes | None:
        u = self.uart
        if u is None or not u.any():
            return None
        n = u.readinto(self.buf)
        return bytes(self.buf[:n]) if n else None

    def uart_send(self, data: bytes) -> None:
        u = self.uart
        if u is None:
            return
        self.de.value(1)
        u.write(data)
        u.flush()
        self.de.value(0)

    def wait_us(self, n: int) -> None:
        u = self.uart
        end = us() + n
        while time.ticks_diff(end, us()) > 0:
            if u is not None and u.any():
                return
            time.sleep_us(100)

    def adc_counts(self, ch: int) -> int:
        return self.adcs[ch].read_u16() >> 4

    def setup_pulses(self, debounce_ms: list[int]) -> None:
        self.counters = []
        for j, ms in enumerate(debounce_ms):
            d = inputs.Debounce(ms * 1000)
            pin = machine.Pin(self.PULSE_PINS[j], machine.Pin.IN, machine.Pin.PULL_UP)

            def irq(p: machine.Pin, d: inputs.Debounce = d) -> None:
                now = us()
                d.edge(now, time.ticks_diff(now, d.last))

            pin.irq(trigger=machine.Pin.IRQ_FALLING, handler=irq)
            self.counters.append((pin, d))

    def pulses(self, ch: int) -> int:
        return self.counters[ch][1].count

    def digital(self, ch: int) -> int:
        return 1 - self.di_pins[ch].value()  # dry contact to ground closes = 1

    def relay(self, on: int) -> None:
        self.relay_pin.value(1 if on else 0)

    def wdt_start(self, ms: int) -> None:
        self.wdt = machine.WDT(timeout=ms)

    def wdt_feed(self) -> None:
        if self.wdt is not None:
            self.wdt.feed()

    def reset_cause(self) -> str:
        c = machine.reset_cause()
        if c == machine.WDT_RESET:
            return "wdt"
        if c == machine.SOFT_RESET:
            return "soft"
        return "power"

    def reset(self) -> None:
        machine.reset()
