"""Hardware layer: one class per port with the interface of :class:`hal.base.Hal`.

``hal.rp2`` and ``hal.esp32`` drive real pins (machine.ADC, UART + DE/RE pin, Pin IRQ pulse
counters, WDT); ``hal.unix`` runs the same node on the MicroPython unix port for tests, the
demo and the bench (pty UART, inputs from a control file, littlefs image on a file). Nothing
above this package knows which one it runs on.
"""
