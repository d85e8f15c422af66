"""The interface every port implements (and the defaults the MCU ports share).

Clocks: ``ticks_ms`` is the node's monotonic time base (sampling, log slots, uptime; it may
wrap, callers use time.ticks_diff); ``line_us`` times the bytes on the trunk for the 3.5
character frame gap. On the MCU both are the hardware ticks; the unix port makes ``ticks_ms``
drivable by the test (simulated time) while ``line_us`` stays real, because the master at the
other end of the pty keeps real time.
"""

import time


def ms() -> int:
    """time.ticks_ms() as the plain int it is (the stubs type ticks as opaque classes)."""
    return time.ticks_ms()  # type: ignore[return-value]


def us() -> int:
    return time.ticks_us()  # type: ignore[return-value]


class Hal:
    ROOT = ""  # where the flash filesystem is mounted ("" = the root on the MCU ports)

    def ticks_ms(self) -> int:
        return ms()

    def line_us(self) -> int:
        return us()

    def uart_open(self, baud: int, parity: str) -> None:
        raise NotImplementedError

    def uart_read(self) -> bytes | None:
        """Every byte received so far, without waiting; None when there is none."""
        raise NotImplementedError

    def uart_send(self, data: bytes) -> None:
        """Raise DE, send, wait for the last stop bit to leave the shift register, drop DE."""
        raise NotImplementedError

    def wait_us(self, us: int) -> None:
        """Sleep until a byte arrives on the UART or ``us`` passed."""
        time.sleep_us(us)

    def adc_counts(self, ch: int) -> int:
        """One 12-bit conversion (0..4095) of analog channel ``ch``."""
        raise NotImplementedError

    def setup_pulses(self, debounce_ms: list[int]) -> None:
        raise NotImplementedError

    def pulses(self, ch: int) -> int:
        """Debounced pulses counted on input ``ch`` since boot."""
        raise NotImplementedError

    def digital(self, ch: int) -> int:
        """Raw level (0/1) of digital input ``ch``; debounce is above the HAL."""
        raise NotImplementedError

    def relay(self, on: int) -> None:
        raise NotImplementedError

    def wdt_start(self, ms: int) -> None:
        raise NotImplementedError

    def wdt_feed(self) -> None:
        raise NotImplementedError

    def reset_cause(self) -> str:
        """"power", "wdt" or "soft"."""
        return "power"

    def reset(self) -> None:
        raise NotImplementedError

    def report(self, node: object) -> None:
        """Publish the node's status (the unix port writes a status file); MCU: nothing."""
